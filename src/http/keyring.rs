//! `/v1/operator/keyring`: the gossip keyring of every datacenter.
//! `GET` lists the keys every member has installed, `POST` installs a key,
//! `PUT` makes it the primary and `DELETE` removes it, each on every alive
//! member ([`crate::gossip::Gossip::key_operation`]) of every gossip pool,
//! as Consul's `Internal.KeyringOperation` does: the WAN pool of the
//! servers (on a server), this datacenter's LAN, and the LAN of each other
//! datacenter, which a server there runs (`/v1/internal/keyring`, a path
//! served only to such a forwarded call). The answer has one entry per
//! pool, WAN first. A server's WAN pool shares its LAN keyring, so the LAN
//! operations are what change the keys; the WAN entry reports them. A pool
//! where some member refused or did not answer turns the whole request
//! into Consul's 500 (`keyringErrorsOrNil`). `?local-only` lists only
//! this datacenter's LAN.

use super::decode::decode_body;
use super::wire::{empty_ok, parse_bool, require_global, ApiError, ApiResult, Ctx};
use crate::acl::{Access, Global};
use crate::gossip::crypto::decode_base64;
use crate::gossip::key_query::{KeyOp, KeyResponse};
use axum::http::Method;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The request body of the writes (Consul's `keyringArgs`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KeyringBody {
    #[serde(rename = "Key")]
    key: String,
}

/// One pool's answer, as Consul's `structs.KeyringResponse` renders.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
struct KeyringResponseJson {
    #[serde(rename = "WAN")]
    wan: bool,
    datacenter: String,
    segment: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    messages: BTreeMap<String, String>,
    keys: BTreeMap<String, usize>,
    primary_keys: BTreeMap<String, usize>,
    num_nodes: usize,
}

/// `relay-factor`: Consul checks it and passes it to serf, whose members
/// then relay their answers through that many others. cairn's asker
/// retransmits instead, so the value is checked and not otherwise used.
fn relay_factor(ctx: &Ctx) -> Result<(), ApiError> {
    let Some(raw) = ctx.query.get("relay-factor").filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let n: i64 = raw.parse().map_err(|e: std::num::ParseIntError| {
        let why = match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                "value out of range"
            }
            _ => "invalid syntax",
        };
        ApiError::bad(format!(
            "Error parsing relay factor: strconv.Atoi: parsing {}: {why}",
            crate::acl::go_quote(raw)
        ))
    })?;
    if !(0..=5).contains(&n) {
        return Err(ApiError::bad(
            "Invalid relay-factor: Relay factor must be in range: [0, 5]",
        ));
    }
    Ok(())
}

/// `local-only`: only for lists, which then cover this datacenter's LAN
/// alone.
fn local_only(ctx: &Ctx) -> Result<bool, ApiError> {
    let Some(raw) = ctx.query.get("local-only").filter(|v| !v.is_empty()) else {
        return Ok(false);
    };
    let local = parse_bool(raw).ok_or_else(|| {
        ApiError::bad(format!(
            "Error parsing local-only: strconv.ParseBool: parsing {}: invalid syntax",
            crate::acl::go_quote(raw)
        ))
    })?;
    if local && ctx.method != Method::GET {
        return Err(ApiError::bad(
            "Invalid use of local-only: local-only can only be set for list requests",
        ));
    }
    Ok(local)
}

/// One pool's result: its entry, and serf's summary error if any.
#[derive(Debug, Serialize, Deserialize)]
struct Pool {
    entry: KeyringResponseJson,
    error: Option<String>,
}

impl Pool {
    fn new(wan: bool, dc: &str, r: KeyResponse) -> Pool {
        Pool {
            entry: KeyringResponseJson {
                wan,
                datacenter: dc.to_string(),
                segment: String::new(),
                messages: r.messages,
                keys: r.keys,
                primary_keys: r.primary_keys,
                num_nodes: r.num_nodes,
            },
            error: r.error,
        }
    }

    fn failed(dc: &str, error: String) -> Pool {
        Pool::new(
            false,
            dc,
            KeyResponse {
                error: Some(error),
                ..KeyResponse::default()
            },
        )
    }
}

/// The key and the access a request needs, checked as Consul orders it.
async fn vet(ctx: &Ctx) -> Result<Result<KeyOp, String>, ApiError> {
    let key = if ctx.method == Method::GET {
        String::new()
    } else {
        decode_body::<KeyringBody>(&ctx.body)?.key
    };
    relay_factor(ctx)?;
    let authz = ctx.authorizer().await?;
    let access = if ctx.method == Method::GET {
        Access::Read
    } else {
        Access::Write
    };
    require_global(&authz, Global::Keyring, access)?;
    Ok(operation(&ctx.method, &key))
}

/// This agent's LAN pool runs `op`; a key that did not decode is the
/// pool's error, as serf decodes it before it asks anyone.
async fn lan(ctx: &Ctx, op: &Result<KeyOp, String>) -> Pool {
    let response = match op {
        Ok(op) => ctx.gossip.key_operation(op.clone()).await,
        Err(e) => KeyResponse {
            error: Some(e.clone()),
            ..KeyResponse::default()
        },
    };
    Pool::new(false, &ctx.config.datacenter, response)
}

/// `GET|POST|PUT|DELETE /v1/operator/keyring`. Needs `keyring:read` to
/// list and `keyring:write` to change, as in Consul.
pub async fn keyring(ctx: Ctx) -> ApiResult {
    let local = local_only(&ctx)?;
    let op = vet(&ctx).await?;
    let dc = ctx.config.datacenter.clone();
    // The LAN pools first, this datacenter's then the others': a server's
    // WAN pool shares its LAN keyring, so the LAN operations are the ones
    // that change (and save) the keys, and the WAN operation then reports
    // them. The answer lists the WAN pool first, as Consul does.
    let mut lans = vec![lan(&ctx, &op).await];
    if !local && op.is_ok() {
        let others: Vec<String> = ctx
            .federation
            .datacenters_from_servers()
            .await
            .into_iter()
            .filter(|d| *d != dc)
            .collect();
        let asked = others.iter().map(|other| remote(&ctx, other));
        lans.extend(futures::future::join_all(asked).await);
    }
    let mut pools = Vec::new();
    if !local {
        if let Some(wan) = ctx.federation.wan() {
            let response = match &op {
                Ok(op) => wan.key_operation(op.clone()).await,
                Err(e) => KeyResponse {
                    error: Some(e.clone()),
                    ..KeyResponse::default()
                },
            };
            pools.push(Pool::new(true, &dc, response));
        }
    }
    pools.extend(lans);
    if let Some(errors) = pool_errors(&pools) {
        return Err(ApiError::Internal(errors));
    }
    if ctx.method != Method::GET {
        return Ok(empty_ok());
    }
    let entries: Vec<KeyringResponseJson> = pools.into_iter().map(|p| p.entry).collect();
    Ok(ctx.json(&entries))
}

/// The internal path another datacenter's LAN pool is asked through.
const REMOTE_PATH: &str = "/v1/internal/keyring";

/// Has a server of `dc` run the request on its LAN pool.
async fn remote(ctx: &Ctx, dc: &str) -> Pool {
    let call = crate::consensus::api::AclCall {
        method: ctx.method.to_string(),
        path: REMOTE_PATH.into(),
        // Named, so a client agent's server passes it on.
        query: Some(format!("dc={dc}")),
        token: ctx
            .token()
            .map(str::to_string)
            .or_else(|| ctx.acl.tokens().default_token()),
        body: ctx.body.to_vec(),
    };
    let timeout = std::time::Duration::from_secs(30);
    match ctx.federation.forward(dc, call, ctx.hops, timeout).await {
        Ok(r) if r.status == 200 => serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| Pool::failed(dc, format!("decoding the answer: {e}"))),
        Ok(r) => Pool::failed(dc, String::from_utf8_lossy(&r.body).trim().to_string()),
        Err(e) => Pool::failed(dc, e.to_string()),
    }
}

/// `/v1/internal/keyring`: this datacenter's LAN part of another
/// datacenter's keyring request, with the same checks; the pool's result
/// whatever it is (the asker reports the errors).
pub async fn keyring_lan(ctx: Ctx) -> ApiResult {
    if ctx.hops == 0 {
        return Err(ApiError::NotFound(String::new()));
    }
    let op = vet(&ctx).await?;
    Ok(ctx.json(&lan(&ctx, &op).await))
}

fn operation(method: &Method, key: &str) -> Result<KeyOp, String> {
    if *method == Method::GET {
        return Ok(KeyOp::List);
    }
    let raw = decode_base64(key).map_err(|e| e.to_string())?;
    Ok(match *method {
        Method::POST => KeyOp::Install(raw),
        Method::PUT => KeyOp::Use(raw),
        _ => KeyOp::Remove(raw),
    })
}

/// Consul's `keyringErrorsOrNil`: each failed pool's error, then each of
/// its members' messages, as one go-multierror text.
fn pool_errors(pools: &[Pool]) -> Option<String> {
    let mut lines = Vec::new();
    for p in pools {
        let Some(error) = &p.error else { continue };
        let name = if p.entry.wan {
            "WAN".to_string()
        } else {
            format!("{} (LAN)", p.entry.datacenter)
        };
        lines.push(format!("{name} error: {error}"));
        lines.extend(
            p.entry
                .messages
                .iter()
                .map(|(node, m)| format!("{node}: {m}")),
        );
    }
    (!lines.is_empty()).then(|| multierror(&lines))
}

/// go-multierror's `ListFormatFunc`.
fn multierror(errors: &[String]) -> String {
    if let [one] = errors {
        return format!("1 error occurred:\n\t* {one}\n\n");
    }
    let points: Vec<String> = errors.iter().map(|e| format!("* {e}")).collect();
    format!(
        "{} errors occurred:\n\t{}\n\n",
        errors.len(),
        points.join("\n\t")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_consuls_multierror() {
        let refused = KeyResponse {
            num_nodes: 3,
            num_resp: 3,
            num_err: 2,
            messages: BTreeMap::from([
                (
                    "s1".into(),
                    "Removing the primary key is not allowed".into(),
                ),
                (
                    "s2".into(),
                    "Removing the primary key is not allowed".into(),
                ),
            ]),
            error: Some("2/3 nodes reported failure".into()),
            ..KeyResponse::default()
        };
        assert_eq!(
            pool_errors(&[Pool::new(false, "dc1", refused)]).unwrap(),
            "3 errors occurred:\n\t* dc1 (LAN) error: 2/3 nodes reported failure\n\t* s1: Removing the primary key is not allowed\n\t* s2: Removing the primary key is not allowed\n\n"
        );
        let bad = KeyResponse {
            error: Some("illegal base64 data at input byte 4".into()),
            ..KeyResponse::default()
        };
        assert_eq!(
            pool_errors(&[Pool::new(true, "dc1", bad)]).unwrap(),
            "1 error occurred:\n\t* WAN error: illegal base64 data at input byte 4\n\n"
        );
        assert_eq!(
            pool_errors(&[Pool::new(false, "dc1", KeyResponse::default())]),
            None
        );
    }

    #[test]
    fn the_key_is_decoded_before_anything_is_asked() {
        assert_eq!(operation(&Method::GET, "ignored"), Ok(KeyOp::List));
        assert_eq!(
            operation(&Method::POST, "aGk="),
            Ok(KeyOp::Install(b"hi".to_vec()))
        );
        assert_eq!(
            operation(&Method::PUT, "aGk="),
            Ok(KeyOp::Use(b"hi".to_vec()))
        );
        assert_eq!(
            operation(&Method::DELETE, "aGk="),
            Ok(KeyOp::Remove(b"hi".to_vec()))
        );
        assert_eq!(
            operation(&Method::POST, "not base64"),
            Err("illegal base64 data at input byte 3".into())
        );
    }

    #[test]
    fn the_answer_is_consuls_json() {
        let json = serde_json::to_value([KeyringResponseJson {
            wan: false,
            datacenter: "dc1".into(),
            segment: String::new(),
            messages: BTreeMap::new(),
            keys: BTreeMap::from([("K".into(), 3)]),
            primary_keys: BTreeMap::from([("K".into(), 3)]),
            num_nodes: 3,
        }])
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"WAN": false, "Datacenter": "dc1", "Segment": "",
                "Keys": {"K": 3}, "PrimaryKeys": {"K": 3}, "NumNodes": 3}])
        );
    }
}
