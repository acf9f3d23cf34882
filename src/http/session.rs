//! `/v1/session/*`: create, destroy, renew, info, node, list.
//!
//! A session's ID is chosen here, before the create command is proposed,
//! because apply must be deterministic. Validation texts and status codes
//! are Consul's: its server-side checks surface as 500s with the text.
//!
//! ACLs as in Consul's Session endpoint: creating, destroying or renewing
//! a session needs `session:write` on the session's node; the reads drop
//! sessions whose node the token has no `session:read` on.

use super::blocking::{self, Watch};
use super::decode::{decode_body, GoDuration};
use super::wire::{require, set_filtered_by_acls, set_meta, ApiError, ApiResult, Ctx};
use crate::acl::{Access, Authorizer, Resource};
use crate::catalog::command::{Command, Response as CmdResponse, SessionOp};
use crate::catalog::types::{ServiceCheckRef, Session, SessionBehavior, SERF_HEALTH_CHECK_ID};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Numeric lock delays below this many nanoseconds are taken as seconds
/// (Consul's `lockDelayMinThreshold`: clients send `15` meaning 15 s).
const LOCK_DELAY_MIN_THRESHOLD: u64 = 1000;
const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);
const SESSION_TTL_MIN: Duration = Duration::from_secs(10);
const SESSION_TTL_MAX: Duration = Duration::from_secs(86400);

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
#[allow(dead_code)] // accepted for compatibility, not used
struct ServiceCheckIn {
    #[serde(rename = "ID")]
    id: String,
    namespace: String,
}

/// Consul's `structs.Session` as `PUT /v1/session/create` decodes it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
#[allow(dead_code)] // accepted for compatibility, not used
struct SessionIn {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    node: Option<String>,
    lock_delay: Option<GoDuration>,
    behavior: String,
    #[serde(rename = "TTL")]
    ttl: String,
    checks: Option<Vec<String>>,
    node_checks: Option<Vec<String>>,
    service_checks: Option<Vec<ServiceCheckIn>>,
    create_index: u64,
    modify_index: u64,
    namespace: String,
    partition: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceCheckJson {
    #[serde(rename = "ID")]
    id: String,
    namespace: String,
}

/// Consul's session JSON. Empty check lists are `null`, as Go's nil slices.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SessionJson {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    node: String,
    lock_delay: u64,
    behavior: &'static str,
    #[serde(rename = "TTL")]
    ttl: String,
    node_checks: Option<Vec<String>>,
    service_checks: Option<Vec<ServiceCheckJson>>,
    create_index: u64,
    modify_index: u64,
}

impl From<&Session> for SessionJson {
    fn from(s: &Session) -> Self {
        SessionJson {
            id: s.id.clone(),
            name: s.name.clone(),
            node: s.node.clone(),
            lock_delay: s.lock_delay_ns,
            behavior: s.behavior.as_str(),
            ttl: s.ttl.clone(),
            node_checks: (!s.node_checks.is_empty()).then(|| s.node_checks.clone()),
            service_checks: (!s.service_checks.is_empty()).then(|| {
                s.service_checks
                    .iter()
                    .map(|c| ServiceCheckJson {
                        id: c.id.clone(),
                        namespace: c.namespace.clone(),
                    })
                    .collect()
            }),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

#[derive(Serialize)]
struct CreatedJson {
    #[serde(rename = "ID")]
    id: String,
}

/// Builds the session a create request asks for, with Consul's defaults
/// (this agent's node, `serfHealth`, 15 s lock-delay, release) and checks.
pub(crate) fn session_from_body(body: &[u8], agent_node: &str) -> Result<Session, ApiError> {
    let mut sess = Session {
        node: agent_node.to_string(),
        node_checks: vec![SERF_HEALTH_CHECK_ID.to_string()],
        lock_delay_ns: DEFAULT_LOCK_DELAY.as_nanos() as u64,
        ..Session::default()
    };
    if body.iter().any(|b| !b.is_ascii_whitespace()) {
        let req: SessionIn = decode_body(body)?;
        sess.name = req.name;
        if let Some(node) = req.node {
            sess.node = node;
        }
        if let Some(GoDuration(ns)) = req.lock_delay {
            sess.lock_delay_ns = if ns < LOCK_DELAY_MIN_THRESHOLD {
                ns.saturating_mul(1_000_000_000)
            } else {
                ns
            };
        }
        // Naming any check list replaces the default serfHealth binding,
        // so `"Checks": []` makes a session that only a TTL or destroy ends.
        if req.checks.is_some() || req.node_checks.is_some() || req.service_checks.is_some() {
            let mut node_checks = req.node_checks.unwrap_or_default();
            for c in req.checks.unwrap_or_default() {
                if !node_checks.contains(&c) {
                    node_checks.push(c);
                }
            }
            sess.node_checks = node_checks;
            sess.service_checks = req
                .service_checks
                .unwrap_or_default()
                .into_iter()
                .map(|c| ServiceCheckRef {
                    id: c.id,
                    namespace: c.namespace,
                })
                .collect();
        }
        sess.behavior = match req.behavior.as_str() {
            "" | "release" => SessionBehavior::Release,
            "delete" => SessionBehavior::Delete,
            other => {
                return Err(ApiError::Internal(format!(
                    "Invalid Behavior setting '{other}'"
                )))
            }
        };
        if !req.ttl.is_empty() {
            let ttl = crate::duration::parse(&req.ttl).map_err(|e| {
                ApiError::Internal(format!("Session TTL '{}' invalid: {e}", req.ttl))
            })?;
            if !ttl.is_zero() && (ttl < SESSION_TTL_MIN || ttl > SESSION_TTL_MAX) {
                return Err(ApiError::Internal(format!(
                    "Invalid Session TTL '{}', must be between [{}={}]",
                    ttl.as_nanos(),
                    crate::duration::format(SESSION_TTL_MIN),
                    crate::duration::format(SESSION_TTL_MAX)
                )));
            }
            sess.ttl = req.ttl;
        }
    }
    if sess.node.is_empty() {
        return Err(ApiError::Internal("Must provide Node".into()));
    }
    Ok(sess)
}

pub async fn create(ctx: Ctx) -> ApiResult {
    ctx.read_opts()?;
    let mut sess = session_from_body(&ctx.body, ctx.agent.node_name())?;
    let authz = ctx.authorizer().await?;
    require(&authz, Resource::Session, &sess.node, Access::Write)?;
    sess.id = uuid::Uuid::new_v4().to_string();
    let id = sess.id.clone();
    ctx.agent
        .write(Command::Session(SessionOp::Create(sess)))
        .await?;
    Ok(ctx.json(&CreatedJson { id }))
}

fn session_id(ctx: &Ctx) -> Result<String, ApiError> {
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing session"));
    }
    Ok(ctx.rest.clone())
}

/// `session:write` on the node of an existing session; an unknown session
/// passes, to be answered as without ACLs.
fn vet_session_write(ctx: &Ctx, authz: &Authorizer, id: &str) -> Result<(), ApiError> {
    if !authz.enabled() {
        return Ok(());
    }
    match ctx.catalog.reader()?.session(id)? {
        Some(s) => require(authz, Resource::Session, &s.node, Access::Write),
        None => Ok(()),
    }
}

pub async fn destroy(ctx: Ctx) -> ApiResult {
    ctx.read_opts()?;
    let id = session_id(&ctx)?;
    let authz = ctx.authorizer().await?;
    vet_session_write(&ctx, &authz, &id)?;
    ctx.agent
        .write(Command::Session(SessionOp::Destroy { id }))
        .await?;
    Ok(ctx.json(&true))
}

pub async fn renew(ctx: Ctx) -> ApiResult {
    ctx.read_opts()?;
    let id = session_id(&ctx)?;
    let authz = ctx.authorizer().await?;
    vet_session_write(&ctx, &authz, &id)?;
    let (_, resp) = ctx
        .agent
        .write(Command::Session(SessionOp::Renew { id: id.clone() }))
        .await?;
    match resp {
        CmdResponse::Session(Some(s)) => Ok(ctx.json(&[SessionJson::from(&s)])),
        CmdResponse::Session(None) => {
            Err(ApiError::NotFound(format!("Session id '{id}' not found")))
        }
        other => Err(ApiError::Internal(format!(
            "unexpected renew response: {other:?}"
        ))),
    }
}

async fn list_where(ctx: Ctx, filter: impl Fn(&Session) -> bool) -> ApiResult {
    let opts = ctx.read_opts()?;
    let authz = ctx.authorizer().await?;
    let mut filtered = false;
    let (sessions, index) = blocking::query(&ctx, &opts, Watch::Sessions, |r| {
        let mut sessions = r.sessions()?;
        sessions.retain(|s| filter(s));
        let before = sessions.len();
        sessions.retain(|s| authz.allows(Resource::Session, &s.node, Access::Read));
        filtered = sessions.len() != before;
        let sessions: Vec<SessionJson> = sessions.iter().map(SessionJson::from).collect();
        Ok((sessions, r.sessions_index()?))
    })
    .await?;
    let mut resp = ctx.json(&sessions);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

pub async fn info(ctx: Ctx) -> ApiResult {
    let id = session_id(&ctx)?;
    list_where(ctx, move |s| s.id == id).await
}

pub async fn node(ctx: Ctx) -> ApiResult {
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing node name"));
    }
    let node = ctx.rest.clone();
    list_where(ctx, move |s| s.node == node).await
}

pub async fn list(ctx: Ctx) -> ApiResult {
    list_where(ctx, |_| true).await
}
