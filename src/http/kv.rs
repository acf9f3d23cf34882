//! `/v1/kv/<key>`: GET (single, `?recurse`, `?keys`, `?raw`), PUT (raw
//! body, `?flags`, `?cas`, `?acquire`, `?release`) and DELETE (`?recurse`,
//! `?cas`). Blocking GETs wake only on writes to their key or prefix.
//!
//! Keys are arbitrary strings; as Consul 1.22 does, only path traversal is
//! refused.
//!
//! ACLs as in Consul's KVS endpoint: a single key needs `key:read` (403
//! even when the key is absent); `?recurse` and `?keys` need `key:list` on
//! the prefix only with `acl.enable_key_list_policy`, and then drop every
//! entry the token cannot read; writes need `key:write`, and a recursive
//! delete write on the whole tree (`KeyWritePrefix`).

use super::blocking::{self, Watch};
use super::types::DirEntryJson;
use super::wire::{require, set_filtered_by_acls, set_meta, ApiError, ApiResult, Ctx};
use crate::acl::{Access, Authorizer, Resource};
use crate::catalog::command::{Command, KvOp, Response as CmdResponse};
use crate::catalog::Table;
use crate::config::Config;
use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;

/// Consul's 413 for a value over `kv_max_value_size`.
fn too_large(len: u64, max: u64) -> ApiError {
    ApiError::Status(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "Request body({len} bytes) too large, max size: {max} bytes. See https://developer.hashicorp.com/docs/agent/config/config-files#kv_max_value_size."
        ),
    )
}

/// Refuses a PUT by its Content-Length before the body is read.
pub fn check_content_length(config: &Config, headers: &HeaderMap) -> Result<(), ApiError> {
    let len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match len {
        Some(len) if len > config.kv_max_value_size => {
            Err(too_large(len, config.kv_max_value_size))
        }
        _ => Ok(()),
    }
}

/// Path traversal in the raw or decoded key is refused (Consul 1.22).
pub fn check_traversal(raw_path: &str, key: &str) -> Result<(), ApiError> {
    let raw = raw_path.to_ascii_lowercase();
    if raw.contains("../") || raw.contains("..\\") {
        return Err(ApiError::bad(
            "URL path contains invalid traversal sequence",
        ));
    }
    for enc in [
        "%2e%2e%2f",
        "%2e%2e/",
        "..%2f",
        "%2e%2e%5c",
        "%252e%252e%252f",
    ] {
        if raw.contains(enc) {
            return Err(ApiError::bad(
                "URL path contains encoded traversal sequence",
            ));
        }
    }
    if key.contains("../") || key.contains("..\\") {
        return Err(ApiError::bad("key contains path traversal sequence"));
    }
    Ok(())
}

/// Consul's `conflictingFlags`: 400 `Conflicting flags: <query>`.
fn conflicting(ctx: &Ctx, flags: &[&str]) -> Result<(), ApiError> {
    if flags.iter().filter(|f| ctx.query.has(f)).count() > 1 {
        return Err(ApiError::bad(format!(
            "Conflicting flags: {}\n",
            ctx.query.encode()
        )));
    }
    Ok(())
}

pub async fn kv(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    match ctx.method {
        Method::GET if ctx.query.has("keys") => get_keys(ctx, opts).await,
        Method::GET => get(ctx, opts).await,
        Method::PUT => put(ctx).await,
        _ => delete(ctx).await,
    }
}

/// Consul's `KeyList` gate for `?recurse` and `?keys`, which it applies
/// only with `acl.enable_key_list_policy`; without it listing is open and
/// only the per-key read filter applies.
fn require_list(ctx: &Ctx, authz: &Authorizer, prefix: &str) -> Result<(), ApiError> {
    if !ctx.config.acl.enable_key_list_policy || authz.allows_prefix_list(prefix) {
        return Ok(());
    }
    Err(crate::acl::denied(authz, "key:list", prefix))
}

async fn get(ctx: Ctx, opts: super::wire::ReadOpts) -> ApiResult {
    let recurse = ctx.query.has("recurse");
    if !recurse && ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing key name"));
    }
    let key = ctx.rest.clone();
    let authz = ctx.authorizer().await?;
    if recurse {
        require_list(&ctx, &authz, &key)?;
    } else {
        require(&authz, Resource::Key, &key, Access::Read)?;
    }
    let mut filtered = false;
    let watch = if recurse {
        Watch::KvPrefix(key.clone())
    } else {
        Watch::KvKey(key.clone())
    };
    let (entries, index) = blocking::query(&ctx, &opts, watch, |r| {
        if recurse {
            let mut entries = r.kv_list(&key)?;
            // The index covers what the token cannot see too, as Consul's
            // does: it is taken before the ACL filter.
            let index = match entries.iter().map(|e| e.modify_index).max() {
                Some(i) => i,
                None => r.index(&[Table::Kvs])?,
            };
            let before = entries.len();
            entries.retain(|e| authz.allows(Resource::Key, &e.key, Access::Read));
            filtered = entries.len() != before;
            Ok((entries, index))
        } else {
            match r.kv_get(&key)? {
                Some(e) => {
                    let index = e.modify_index;
                    Ok((vec![e], index))
                }
                None => Ok((Vec::new(), r.index(&[Table::Kvs])?)),
            }
        }
    })
    .await?;
    let mut resp = if entries.is_empty() {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    } else if ctx.query.has("raw") && !recurse {
        // Raw values are served so a browser never interprets them.
        let value = entries
            .into_iter()
            .next()
            .map(|e| e.value)
            .unwrap_or_default();
        let mut r = Response::new(Body::from(value));
        let h = r.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        h.insert(
            "X-Content-Type-Options",
            HeaderValue::from_static("nosniff"),
        );
        h.insert(
            "Content-Security-Policy",
            HeaderValue::from_static("sandbox"),
        );
        r
    } else {
        let out: Vec<DirEntryJson> = entries.iter().map(|e| DirEntryJson::new(e, true)).collect();
        ctx.json(&out)
    };
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

async fn get_keys(ctx: Ctx, opts: super::wire::ReadOpts) -> ApiResult {
    // The historic misspelling `seperator` is honoured; `separator` wins.
    let sep = ctx
        .query
        .get("separator")
        .or_else(|| ctx.query.get("seperator"))
        .unwrap_or("")
        .to_string();
    let prefix = ctx.rest.clone();
    let authz = ctx.authorizer().await?;
    require_list(&ctx, &authz, &prefix)?;
    let mut filtered = false;
    let watch = Watch::KvPrefix(prefix.clone());
    let (keys, index) = blocking::query(&ctx, &opts, watch, |r| {
        let (mut keys, max) = r.kv_keys(&prefix, &sep)?;
        let index = if keys.is_empty() {
            r.index(&[Table::Kvs])?
        } else {
            max
        };
        let before = keys.len();
        keys.retain(|k| authz.allows(Resource::Key, k, Access::Read));
        filtered = keys.len() != before;
        Ok((keys, index))
    })
    .await?;
    let mut resp = if keys.is_empty() && !prefix.is_empty() {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    } else {
        ctx.json(&keys)
    };
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

fn parse_u64(ctx: &Ctx, key: &str) -> Result<Option<u64>, ApiError> {
    // Consul surfaces the strconv error as a 500.
    ctx.query.u64(key).map_err(ApiError::Internal)
}

async fn put(ctx: Ctx) -> ApiResult {
    if ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing key name"));
    }
    conflicting(&ctx, &["cas", "acquire", "release"])?;
    let flags = parse_u64(&ctx, "flags")?.unwrap_or(0);
    let cas = parse_u64(&ctx, "cas")?;
    let max = ctx.config.kv_max_value_size;
    if ctx.body.len() as u64 > max {
        return Err(too_large(ctx.body.len() as u64, max));
    }
    let key = ctx.rest.clone();
    let authz = ctx.authorizer().await?;
    require(&authz, Resource::Key, &key, Access::Write)?;
    let value = ctx.body.to_vec();
    let acquire = ctx.query.get("acquire").map(str::to_string);
    let release = ctx.query.get("release").map(str::to_string);
    let conditional = cas.is_some() || acquire.is_some() || release.is_some();
    let op = match (cas, acquire, release) {
        (Some(index), _, _) => KvOp::Cas {
            key,
            value,
            flags,
            index,
        },
        (None, Some(session), _) => KvOp::Lock {
            key,
            value,
            flags,
            session,
        },
        (None, None, Some(session)) => KvOp::Unlock {
            key,
            value,
            flags,
            session,
        },
        (None, None, None) => KvOp::Set { key, value, flags },
    };
    // An unknown session is the state machine's `invalid session "<id>"`,
    // a 500 as in Consul; a held lock or a lock-delay is `false`.
    let (_, resp) = ctx.agent.write(Command::Kv(op)).await?;
    let done = !conditional || matches!(resp, CmdResponse::Bool(true));
    Ok(ctx.json(&done))
}

async fn delete(ctx: Ctx) -> ApiResult {
    conflicting(&ctx, &["recurse", "cas"])?;
    let recurse = ctx.query.has("recurse");
    if !recurse && ctx.rest.is_empty() {
        return Err(ApiError::bad("Missing key name"));
    }
    let cas = parse_u64(&ctx, "cas")?;
    let key = ctx.rest.clone();
    let authz = ctx.authorizer().await?;
    if recurse && cas.is_none() {
        if !authz.key_write_prefix(&key) {
            return Err(crate::acl::denied(&authz, "key:write", &key));
        }
    } else {
        require(&authz, Resource::Key, &key, Access::Write)?;
    }
    let op = match (cas, recurse) {
        (Some(index), _) => KvOp::DeleteCas { key, index },
        (None, true) => KvOp::DeleteTree { prefix: key },
        (None, false) => KvOp::Delete { key },
    };
    let (_, resp) = ctx.agent.write(Command::Kv(op)).await?;
    let done = cas.is_none() || matches!(resp, CmdResponse::Bool(true));
    Ok(ctx.json(&done))
}
