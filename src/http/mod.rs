//! Consul's HTTP API (port 8500).
//!
//! Routing is Consul's own rather than axum's: Go's `ServeMux` semantics
//! (exact paths and `/prefix/` paths, longest pattern wins, the rest of the
//! path is the argument: a KV key may contain anything, `%2F` included),
//! methods enforced per endpoint with `405` + `Allow: OPTIONS,<methods>`,
//! `OPTIONS` answered with the Allow list, and unknown `/v1/...` paths
//! answered with Consul's 404 text. The web UI (`ui`) owns its content path
//! (`/ui/`) when it is on. axum serves the connections and hands every
//! request to [`dispatch`].

mod acl;
mod acl_forward;
pub(crate) mod agent;
mod agent_token;
mod autopilot;
mod blocking;
pub(crate) mod catalog;
mod check;
mod cluster;
pub(crate) mod config;
pub(crate) mod coordinate;
mod datacenter;
pub mod decode;
pub(crate) mod discovery_chain;
mod event;
mod health;
mod internal;
mod keyring;
mod kv;
pub mod listener;
mod metrics;
mod monitor;
mod operator;
mod query;
pub(crate) mod session;
mod snapshot;
mod status;
pub(crate) mod txn;
pub mod types;
mod ui;
pub mod wire;

use crate::config::Config;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
pub use wire::Api;
use wire::{ApiError, ApiResult, Ctx, Query};

type HandlerFn = fn(Ctx) -> BoxFuture<'static, ApiResult>;

/// One registered endpoint.
struct Route {
    /// Path; ends in `/` for prefix routes (`/v1/kv/`).
    pattern: &'static str,
    methods: &'static [&'static str],
    handler: HandlerFn,
}

impl Route {
    fn is_prefix(&self) -> bool {
        self.pattern.ends_with('/')
    }

    fn allow(&self) -> String {
        let mut s = String::from("OPTIONS");
        for m in self.methods {
            s.push(',');
            s.push_str(m);
        }
        s
    }

    /// Metric label: the pattern with `/` -> `_` (`v1_kv_`), as Consul's `api.http`.
    fn label(&self) -> String {
        self.pattern.trim_start_matches('/').replace('/', "_")
    }
}

macro_rules! route {
    ($pattern:expr, [$($m:expr),+], $handler:path) => {
        Route {
            pattern: $pattern,
            methods: &[$($m),+],
            handler: |ctx| -> BoxFuture<'static, ApiResult> { Box::pin($handler(ctx)) },
        }
    };
}

const GET: &str = "GET";
const PUT: &str = "PUT";
const DELETE: &str = "DELETE";
const POST: &str = "POST";

fn routes() -> Vec<Route> {
    vec![
        // acl
        route!("/v1/acl/bootstrap", [PUT], acl::bootstrap),
        route!("/v1/acl/token", [PUT], acl::token_create),
        route!("/v1/acl/token/", [GET, PUT, DELETE], acl::token_item),
        route!("/v1/acl/tokens", [GET], acl::token_list),
        route!("/v1/acl/policy", [PUT], acl::policy_create),
        route!("/v1/acl/policy/", [GET, PUT, DELETE], acl::policy_item),
        route!("/v1/acl/policies", [GET], acl::policy_list),
        route!("/v1/acl/role", [PUT], acl::role_create),
        route!("/v1/acl/role/", [GET, PUT, DELETE], acl::role_item),
        route!("/v1/acl/roles", [GET], acl::role_list),
        route!("/v1/acl/login", [POST], acl::login),
        route!("/v1/acl/logout", [POST], acl::logout),
        route!("/v1/acl/replication", [GET], acl::replication),
        route!("/v1/internal/acl/state", [GET], acl::replication_state),
        // agent
        route!("/v1/agent/self", [GET], agent::self_),
        route!("/v1/agent/version", [GET], agent::version),
        route!("/v1/agent/host", [GET], agent::host),
        route!("/v1/agent/members", [GET], cluster::members),
        route!("/v1/agent/join/", [PUT], cluster::join),
        route!("/v1/agent/force-leave/", [PUT], cluster::force_leave),
        route!(
            "/v1/operator/raft/peer",
            [DELETE],
            cluster::raft_peer_delete
        ),
        route!("/v1/agent/metrics", [GET], metrics::metrics),
        route!("/v1/agent/monitor", [GET], monitor::monitor),
        route!("/v1/agent/maintenance", [PUT], agent::node_maintenance),
        route!("/v1/agent/leave", [PUT], agent::leave),
        route!("/v1/agent/reload", [PUT], agent::reload),
        route!("/v1/agent/token/", [PUT], agent_token::update),
        route!("/v1/agent/services", [GET], agent::services),
        route!("/v1/agent/service/", [GET], agent::service),
        route!("/v1/agent/service/register", [PUT], agent::register_service),
        route!(
            "/v1/agent/service/deregister/",
            [PUT],
            agent::deregister_service
        ),
        route!(
            "/v1/agent/service/maintenance/",
            [PUT],
            agent::service_maintenance
        ),
        route!("/v1/agent/checks", [GET], agent::checks),
        route!("/v1/agent/check/register", [PUT], agent::register_check),
        route!(
            "/v1/agent/check/deregister/",
            [PUT],
            agent::deregister_check
        ),
        route!("/v1/agent/check/pass/", [PUT], agent::check_pass),
        route!("/v1/agent/check/warn/", [PUT], agent::check_warn),
        route!("/v1/agent/check/fail/", [PUT], agent::check_fail),
        route!("/v1/agent/check/update/", [PUT], agent::check_update),
        route!(
            "/v1/agent/health/service/id/",
            [GET],
            agent::health_service_by_id
        ),
        route!(
            "/v1/agent/health/service/name/",
            [GET],
            agent::health_service_by_name
        ),
        // catalog
        route!("/v1/catalog/register", [PUT], catalog::register),
        route!("/v1/catalog/deregister", [PUT], catalog::deregister),
        route!("/v1/catalog/datacenters", [GET], catalog::datacenters),
        route!("/v1/catalog/nodes", [GET], catalog::nodes),
        route!("/v1/catalog/services", [GET], catalog::services),
        route!("/v1/catalog/service/", [GET], catalog::service),
        route!("/v1/catalog/connect/", [GET], catalog::connect),
        route!("/v1/catalog/node/", [GET], catalog::node),
        route!("/v1/catalog/node-services/", [GET], catalog::node_services),
        // coordinate
        route!("/v1/coordinate/datacenters", [GET], coordinate::datacenters),
        route!("/v1/coordinate/nodes", [GET], coordinate::nodes),
        route!("/v1/coordinate/node/", [GET], coordinate::node),
        route!("/v1/coordinate/update", [PUT], coordinate::update),
        // health
        route!("/v1/health/node/", [GET], health::node),
        route!("/v1/health/checks/", [GET], health::checks),
        route!("/v1/health/state/", [GET], health::state),
        route!("/v1/health/service/", [GET], health::service),
        route!("/v1/health/connect/", [GET], health::connect),
        route!("/v1/health/ingress/", [GET], health::ingress),
        // the web UI's summaries
        route!("/v1/internal/ui/services", [GET], internal::services),
        route!("/v1/internal/ui/nodes", [GET], internal::nodes),
        route!("/v1/internal/ui/node/", [GET], internal::node),
        route!(
            "/v1/internal/ui/catalog-overview",
            [GET],
            internal::catalog_overview
        ),
        // user events
        route!("/v1/event/fire/", [PUT], event::fire),
        route!("/v1/event/list", [GET], event::list),
        // kv, txn
        route!("/v1/kv/", [GET, PUT, DELETE], kv::kv),
        route!("/v1/txn", [PUT], txn::txn),
        // sessions
        route!("/v1/session/create", [PUT], session::create),
        route!("/v1/session/destroy/", [PUT], session::destroy),
        route!("/v1/session/renew/", [PUT], session::renew),
        route!("/v1/session/info/", [GET], session::info),
        route!("/v1/session/node/", [GET], session::node),
        route!("/v1/session/list", [GET], session::list),
        // status, operator
        route!("/v1/status/leader", [GET], status::leader),
        route!("/v1/status/peers", [GET], status::peers),
        route!(
            "/v1/operator/raft/configuration",
            [GET],
            operator::raft_configuration
        ),
        route!(
            "/v1/operator/autopilot/configuration",
            [GET, PUT],
            autopilot::configuration
        ),
        route!("/v1/operator/autopilot/health", [GET], autopilot::health),
        route!(
            "/v1/operator/raft/transfer-leader",
            [PUT],
            operator::transfer_leader
        ),
        route!("/v1/operator/usage", [GET], operator::usage),
        route!("/v1/operator/autopilot/state", [GET], autopilot::state),
        route!("/v1/config", [PUT], config::apply),
        route!("/v1/config/", [GET, DELETE], config::item),
        route!(
            "/v1/discovery-chain/",
            [GET, POST],
            discovery_chain::discovery_chain
        ),
        route!("/v1/snapshot", [GET, PUT], snapshot::snapshot),
        // prepared queries
        route!("/v1/query", [GET, POST], query::general),
        route!("/v1/query/", [GET, PUT, DELETE], query::specific),
        route!(
            "/v1/operator/keyring",
            [GET, POST, PUT, DELETE],
            keyring::keyring
        ),
        route!(
            "/v1/internal/keyring",
            [GET, POST, PUT, DELETE],
            keyring::keyring_lan
        ),
    ]
}

struct Server {
    api: Api,
    routes: Vec<Route>,
    /// `None` when the UI is off.
    ui: Option<ui::Ui>,
}

impl Server {
    /// Go `ServeMux` matching: the longest pattern that equals the path
    /// (exact routes) or prefixes it (prefix routes).
    fn find(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .filter(|r| {
                if r.is_prefix() {
                    path.starts_with(r.pattern)
                } else {
                    path == r.pattern
                }
            })
            .max_by_key(|r| r.pattern.len())
    }
}

/// How long in-flight requests may run on once shutdown begins.
pub const DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The running HTTP listeners.
pub struct HttpServers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    server: Arc<Server>,
}

impl HttpServers {
    /// The ACL endpoints, for a server to answer the `/v1/acl/*` requests
    /// client agents forward (served even with the HTTP port off).
    pub fn acl_endpoints(&self) -> Arc<dyn crate::consensus::api::AclEndpoints> {
        Arc::new(acl_forward::Endpoints {
            server: self.server.clone(),
        })
    }

    /// Waits until every listener has stopped after the agent's shutdown
    /// signal (in-flight requests done, or [`DRAIN`] passed).
    pub async fn drained(self) {
        for t in self.tasks {
            let _ = tokio::time::timeout(DRAIN + std::time::Duration::from_secs(1), t).await;
        }
    }
}

/// Binds the HTTP listeners on every client address, and the HTTPS ones
/// when `ports.https` is set (serving the same routes with `https`), and
/// serves them in the background until the agent shuts down. Returns once
/// bound; a bind failure is an error. The router is built even when no
/// listener is, since a server answers the ACL requests client agents
/// forward to it through it.
pub async fn start(
    api: Api,
    https: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<HttpServers> {
    let config = api.config.clone();
    let shutdown = api.agent.shutdown_signal();
    let plain = port("HTTP", config.ports.http)?;
    let tls = match (port("HTTPS", config.ports.https)?, https) {
        (Some(port), Some(tls)) => Some((
            port,
            listener::HttpsTls::new(tls, config.limits.https_handshake_timeout),
        )),
        (Some(_), None) => {
            return Err(std::io::Error::other(
                "HTTPS port configured but no TLS certificate to serve it with",
            ))
        }
        (None, _) => None,
    };
    let ui = if plain.is_none() && tls.is_none() {
        None
    } else {
        ui::Ui::new(&config)?
    };
    let server = Arc::new(Server {
        api,
        routes: routes(),
        ui,
    });
    let mut servers = HttpServers {
        tasks: Vec::new(),
        server: server.clone(),
    };
    if plain.is_none() && tls.is_none() {
        return Ok(servers);
    }
    let app = axum::Router::new().fallback(dispatch).with_state(server);
    // One allowance per client IP across every HTTP and HTTPS listener, as
    // Consul's.
    let limiter = listener::ConnLimiter::new(config.limits.http_max_conns_per_client as usize);
    let listeners = plain
        .map(|p| ("HTTP", p, None))
        .into_iter()
        .chain(tls.map(|(p, t)| ("HTTPS", p, Some(t))));
    for (scheme, port, tls) in listeners {
        for ip in &config.client_addrs {
            let addr = SocketAddr::new(*ip, port);
            let tcp = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("Error starting {scheme} listener on {addr}: {e}"),
                )
            })?;
            let mut l = listener::LimitedListener::new(tcp, limiter.clone());
            if let Some(tls) = tls.clone() {
                l = l.with_tls(tls);
            }
            let serve = listener::serve(l, app.clone(), shutdown.clone(), DRAIN);
            servers.tasks.push(tokio::spawn(serve));
            tracing::info!(%addr, "{scheme} API listening");
        }
    }
    Ok(servers)
}

/// A listener's port; `None` when it is off (negative, Consul's -1).
fn port(scheme: &str, port: i32) -> std::io::Result<Option<u16>> {
    if port < 0 {
        return Ok(None);
    }
    u16::try_from(port)
        .map(Some)
        .map_err(|_| std::io::Error::other(format!("invalid {scheme} port {port}")))
}

/// Largest body read for any request. KV values are capped separately at
/// `kv_max_value_size` with Consul's 413 text; this bounds memory.
fn body_limit(config: &Config) -> usize {
    let kv = usize::try_from(config.kv_max_value_size).unwrap_or(usize::MAX / 4);
    kv.saturating_mul(2).saturating_add(1024 * 1024)
}

async fn dispatch(State(server): State<Arc<Server>>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let (label, resp) = route_request(&server, req).await;
    crate::metrics::http_request(
        method.as_str(),
        label,
        resp.status().as_u16(),
        started.elapsed(),
    );
    resp
}

async fn route_request(server: &Server, req: Request) -> (String, Response) {
    let raw_path = req.uri().path().to_string();
    if let Some(ui) = server.ui.as_ref().filter(|ui| ui.handles(&raw_path)) {
        let resp = ui
            .respond(req.method(), req.headers(), &raw_path, req.uri().query())
            .await;
        return ("ui".into(), resp);
    }
    let Some(route) = server.find(&raw_path) else {
        return (
            "unknown".into(),
            not_registered(&server.api.config, &raw_path),
        );
    };
    let label = route.label();
    let method = req.method().clone();
    let mut resp = if method == Method::OPTIONS {
        let mut r = Response::new(Body::empty());
        let allow = query::options_allow(&raw_path)
            .map(str::to_string)
            .unwrap_or_else(|| route.allow());
        if let Ok(v) = HeaderValue::from_str(&allow) {
            r.headers_mut().insert(header::ALLOW, v);
        }
        r
    } else if !route.methods.contains(&method.as_str()) {
        ApiError::MethodNotAllowed {
            method: method.to_string(),
            allow: route.allow(),
        }
        .into_response()
    } else {
        match call(server, route, req, &raw_path).await {
            Ok(r) => r,
            Err(e) => e.into_response(),
        }
    };
    wire::set_acl_policy(&mut resp, &server.api.acl);
    (label, resp)
}

async fn call(server: &Server, route: &Route, req: Request, raw_path: &str) -> ApiResult {
    let api = &server.api;
    let raw_query = req.uri().query().map(str::to_string);
    let query = Query::parse(raw_query.as_deref());
    let method = req.method().clone();
    let headers = req.headers().clone();
    let hops = req
        .extensions()
        .get::<datacenter::Hops>()
        .map_or(0, |h| h.0);
    if route.pattern == "/v1/kv/" && method == Method::PUT {
        kv::check_content_length(&api.config, &headers)?;
    }
    let limit = if route.pattern == acl_forward::SNAPSHOT_PATH {
        crate::snapshot::MAX_ARCHIVE
    } else {
        body_limit(&api.config)
    };
    let body = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            ApiError::Status(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request body too large".into(),
            )
        })?;
    let rest = wire::percent_decode(&raw_path[route.pattern.len().min(raw_path.len())..], false);
    let ctx = Ctx {
        api: api.clone(),
        shutdown: api.agent.shutdown_signal(),
        method,
        rest,
        query,
        headers,
        body,
        raw_path: raw_path.to_string(),
        raw_query: raw_query.clone(),
        hops,
    };
    if let Some(dc) = datacenter::target(&ctx, route.pattern) {
        return datacenter::forward(&ctx, &dc).await;
    }
    if route.pattern == "/v1/kv/" {
        kv::check_traversal(raw_path, &ctx.rest)?;
    }
    if acl_forward::forwards(server, route) {
        let call = crate::consensus::api::AclCall {
            method: ctx.method.to_string(),
            path: raw_path.to_string(),
            query: raw_query,
            token: ctx
                .token()
                .map(str::to_string)
                .or_else(|| api.acl.tokens().default_token()),
            body: ctx.body.to_vec(),
        };
        return acl_forward::forward(server, call).await;
    }
    if !api.acl.enabled() {
        return (route.handler)(ctx).await;
    }
    // Writes the handler forwards to a server carry the request's token,
    // else this agent's default token: the one the request was checked
    // with here, as Consul's agent sends its user token in the RPC.
    let token = ctx
        .token()
        .map(str::to_string)
        .or_else(|| api.acl.tokens().default_token());
    crate::acl::REQUEST_TOKEN
        .scope(token, (route.handler)(ctx))
        .await
}

/// Paths no endpoint is registered for.
fn not_registered(config: &Config, path: &str) -> Response {
    if path.starts_with("/v1/") {
        return ApiError::NotFound("Invalid URL path: not a recognized HTTP API endpoint".into())
            .into_response();
    }
    if path == "/" {
        if config.ui {
            return ui::redirect(&config.ui_content_path);
        }
        return (
            StatusCode::OK,
            "Consul Agent: UI disabled. To enable, set ui_config.enabled=true in the agent configuration and restart.",
        )
            .into_response();
    }
    let mut r = Response::new(Body::from("404 page not found\n"));
    *r.status_mut() = StatusCode::NOT_FOUND;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
