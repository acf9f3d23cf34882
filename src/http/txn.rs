//! `PUT /v1/txn`: up to 128 KV, node, service and check operations (session
//! locks included) applied atomically. 200 with
//! `{"Results":[...],"Errors":null}`, or 409 with `{"Results":null,
//! "Errors":[{"OpIndex":n,"What":"..."}]}` when any operation fails (then
//! nothing is written).
//!
//! ACLs as in Consul's `kvsPreApply`, per operation before anything is
//! applied: writes need `key:write` (`delete-tree` write on the whole
//! tree), the checks (`check-index`, `check-session`, `check-not-exists`)
//! `key:read`; a denied operation is one of the 409's errors. Reads are
//! not refused but their results are cut to the keys the token can read.
//! Node, service and check operations need write on the node or service
//! for every verb, as in Consul's `vetNodeTxnOp` and friends, and `get`
//! results are cut to what the token can read.

use super::catalog::{HealthCheckIn, NodeServiceIn};
use super::decode::decode_body;
use super::types::{DirEntryJson, HealthCheckJson, NodeJson, NodeServiceJson};
use super::wire::{require, set_meta, ApiError, ApiResult, Ctx};
use crate::acl::{Access, Authorizer, Resource};
use crate::catalog::command::{
    CatalogVerb, Command, KvOp, Response as CmdResponse, TxnOp, TxnResult,
};
use crate::catalog::query::Reader;
use crate::catalog::types::Node;
use axum::http::StatusCode;
use base64::Engine;
use serde::{Deserialize, Serialize};

const MAX_TXN_OPS: usize = 128;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct TxnOpIn {
    #[serde(rename = "KV")]
    kv: Option<KvOpIn>,
    node: Option<NodeOpIn>,
    service: Option<ServiceOpIn>,
    check: Option<CheckOpIn>,
}

/// `api.TxnNodeOp`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct NodeOpIn {
    verb: String,
    node: NodeIn,
}

/// `api.Node` as a request body.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
#[allow(dead_code)] // partition/peer accepted for compatibility, not used
struct NodeIn {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    datacenter: String,
    tagged_addresses: std::collections::BTreeMap<String, String>,
    meta: std::collections::BTreeMap<String, String>,
    create_index: u64,
    modify_index: u64,
    partition: String,
    peer_name: String,
    locality: Option<serde_json::Value>,
}

/// `api.TxnServiceOp`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ServiceOpIn {
    verb: String,
    node: String,
    service: NodeServiceIn,
}

/// `api.TxnCheckOp`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct CheckOpIn {
    verb: String,
    check: HealthCheckIn,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
#[allow(dead_code)] // namespace/partition accepted for compatibility, not used
struct KvOpIn {
    verb: String,
    key: String,
    value: Option<String>,
    flags: u64,
    index: u64,
    session: String,
    namespace: String,
    partition: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TxnErrorJson {
    op_index: usize,
    what: String,
}

/// `structs.TxnResult`: exactly one of its fields is set.
#[derive(Serialize, Default)]
#[serde(rename_all = "PascalCase")]
struct TxnResultJson {
    #[serde(rename = "KV", skip_serializing_if = "Option::is_none")]
    kv: Option<DirEntryJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<NodeJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<NodeServiceJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<HealthCheckJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TxnResponseJson {
    results: Option<Vec<TxnResultJson>>,
    errors: Option<Vec<TxnErrorJson>>,
}

/// Converts one wire op; `Err` is the op's 409 reason.
fn convert(op: KvOpIn, value: Vec<u8>) -> Result<TxnOp, String> {
    let KvOpIn {
        verb,
        key,
        flags,
        index,
        session,
        ..
    } = op;
    Ok(match verb.as_str() {
        "set" => TxnOp::Write(KvOp::Set { key, value, flags }),
        "cas" => TxnOp::Write(KvOp::Cas {
            key,
            value,
            flags,
            index,
        }),
        "get" => TxnOp::Get { key },
        "get-or-empty" => TxnOp::GetOrEmpty { key },
        "get-tree" => TxnOp::GetTree { prefix: key },
        "check-index" => TxnOp::CheckIndex { key, index },
        "check-not-exists" => TxnOp::CheckNotExists { key },
        "delete" => TxnOp::Write(KvOp::Delete { key }),
        "delete-tree" => TxnOp::Write(KvOp::DeleteTree { prefix: key }),
        "delete-cas" => TxnOp::Write(KvOp::DeleteCas { key, index }),
        "lock" => TxnOp::Write(KvOp::Lock {
            key,
            value,
            flags,
            session,
        }),
        "unlock" => TxnOp::Write(KvOp::Unlock {
            key,
            value,
            flags,
            session,
        }),
        "check-session" => TxnOp::CheckSession { key, session },
        other => return Err(format!("unknown KV verb {other:?}")),
    })
}

/// Converts one node, service or check op; `Err` is the op's 409 reason.
fn catalog_op(op: TxnOpIn, local_dc: &str) -> Result<TxnOp, String> {
    let verb_of = |kind: &str, verb: &str| {
        CatalogVerb::parse(verb).ok_or_else(|| format!("unknown {kind} verb {verb:?}"))
    };
    let error_text = |e: ApiError| match e {
        ApiError::BadRequest(m)
        | ApiError::NotFound(m)
        | ApiError::Internal(m)
        | ApiError::Status(_, m) => m,
        ApiError::MethodNotAllowed { method, .. } => method,
    };
    if let Some(NodeOpIn { verb, node: n }) = op.node {
        let datacenter = if n.datacenter.is_empty() {
            local_dc.to_string()
        } else {
            n.datacenter
        };
        return Ok(TxnOp::Node {
            verb: verb_of("Node", &verb)?,
            node: Node {
                id: n.id.to_ascii_lowercase(),
                name: n.node,
                address: n.address,
                datacenter,
                tagged_addresses: n.tagged_addresses,
                meta: n.meta,
                create_index: n.create_index,
                modify_index: n.modify_index,
            },
        });
    }
    if let Some(ServiceOpIn {
        verb,
        node,
        service,
    }) = op.service
    {
        let verb = verb_of("Service", &verb)?;
        let lookup = matches!(
            verb,
            CatalogVerb::Get | CatalogVerb::Delete | CatalogVerb::DeleteCas
        );
        let service = service.into_service(&node, lookup).map_err(error_text)?;
        return Ok(TxnOp::Service {
            verb,
            node,
            service,
        });
    }
    if let Some(CheckOpIn { verb, check }) = op.check {
        let verb = verb_of("Check", &verb)?;
        let check = check.into_check("").map_err(error_text)?;
        return Ok(TxnOp::Check { verb, check });
    }
    Err("no operation specified".into())
}

fn conflict(ctx: &Ctx, errors: Vec<TxnErrorJson>) -> ApiResult {
    let mut resp = ctx.json(&TxnResponseJson {
        results: None,
        errors: Some(errors),
    });
    *resp.status_mut() = StatusCode::CONFLICT;
    Ok(resp)
}

/// Decodes a `PUT /v1/txn` body into its operations. The outer error is
/// the request's 400 or 413; the inner one lists the operations that cannot
/// run, which Consul answers with a 409 before anything is applied.
pub(crate) fn decode_ops(
    body: &[u8],
    max_value: u64,
    local_dc: &str,
) -> Result<Result<Vec<TxnOp>, Vec<TxnErrorJson>>, ApiError> {
    let ops: Vec<TxnOpIn> = decode_body(body).map_err(|e| match e {
        ApiError::BadRequest(m) => {
            ApiError::bad(m.replacen("Request decode failed", "Failed to parse body", 1))
        }
        other => other,
    })?;
    if ops.len() > MAX_TXN_OPS {
        return Err(ApiError::Status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Transaction contains too many operations ({} > {MAX_TXN_OPS})",
                ops.len()
            ),
        ));
    }
    let mut converted = Vec::with_capacity(ops.len());
    let mut errors = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        let kv = match op {
            TxnOpIn { kv: Some(kv), .. } => kv,
            other => {
                match catalog_op(other, local_dc) {
                    Ok(op) => converted.push(op),
                    Err(what) => errors.push(TxnErrorJson { op_index: i, what }),
                }
                continue;
            }
        };
        let value = match kv.value.as_deref() {
            None | Some("") => Vec::new(),
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| {
                    ApiError::bad(format!("Failed to parse body: illegal base64 data: {e}"))
                })?,
        };
        if value.len() as u64 > max_value {
            return Err(ApiError::Status(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "Value for key {:?} is too large ({} > {} bytes)",
                    kv.key,
                    value.len(),
                    max_value
                ),
            ));
        }
        match convert(kv, value) {
            Ok(op) => converted.push(op),
            Err(what) => errors.push(TxnErrorJson { op_index: i, what }),
        }
    }
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    Ok(Ok(converted))
}

/// What operation `op` needs, or the denial's text.
fn vet_op(authz: &Authorizer, op: &TxnOp, r: &Reader<'_>) -> Result<(), ApiError> {
    let (key, access) = match op {
        TxnOp::Node { .. } | TxnOp::Service { .. } | TxnOp::Check { .. } => {
            return match crate::acl::command::catalog_txn_need(op, r) {
                Some((res, name)) => require(authz, res, &name, Access::Write),
                None => Ok(()),
            };
        }
        TxnOp::Write(KvOp::DeleteTree { prefix }) => {
            if authz.key_write_prefix(prefix) {
                return Ok(());
            }
            return Err(crate::acl::denied(authz, "key:write", prefix));
        }
        TxnOp::Write(
            KvOp::Set { key, .. }
            | KvOp::Cas { key, .. }
            | KvOp::Delete { key }
            | KvOp::DeleteCas { key, .. }
            | KvOp::Lock { key, .. }
            | KvOp::Unlock { key, .. },
        ) => (key, Access::Write),
        TxnOp::CheckIndex { key, .. }
        | TxnOp::CheckNotExists { key }
        | TxnOp::CheckSession { key, .. } => (key, Access::Read),
        // Filtered on the way out instead.
        TxnOp::Get { .. } | TxnOp::GetOrEmpty { .. } | TxnOp::GetTree { .. } => return Ok(()),
    };
    require(authz, Resource::Key, key, access)
}

/// The operations the token may not run, as 409 errors.
fn vet_ops(authz: &Authorizer, ops: &[TxnOp], r: &Reader<'_>) -> Vec<TxnErrorJson> {
    let mut errors = Vec::new();
    if !authz.enabled() {
        return errors;
    }
    for (i, op) in ops.iter().enumerate() {
        if let Err(e) = vet_op(authz, op, r) {
            let what = match e {
                ApiError::BadRequest(m)
                | ApiError::NotFound(m)
                | ApiError::Internal(m)
                | ApiError::Status(_, m) => m,
                ApiError::MethodNotAllowed { method, .. } => method,
            };
            errors.push(TxnErrorJson { op_index: i, what });
        }
    }
    errors
}

/// One result as Consul renders it, or none when the token may not read
/// it (Consul's `FilterTxnResults`).
fn result_json(authz: &Authorizer, r: &TxnResult) -> Option<TxnResultJson> {
    let readable = match r {
        TxnResult::Kv { entry, .. } => authz.allows(Resource::Key, &entry.key, Access::Read),
        TxnResult::Node(n) => authz.allows(Resource::Node, &n.name, Access::Read),
        TxnResult::Service(s) => authz.allows(Resource::Service, &s.name, Access::Read),
        TxnResult::Check(c) if c.service_id.is_empty() => {
            authz.allows(Resource::Node, &c.node, Access::Read)
        }
        TxnResult::Check(c) => authz.allows(Resource::Service, &c.service_name, Access::Read),
    };
    if !readable {
        return None;
    }
    Some(match r {
        TxnResult::Kv {
            entry,
            include_value,
        } => TxnResultJson {
            kv: Some(DirEntryJson::new(entry, *include_value)),
            ..TxnResultJson::default()
        },
        TxnResult::Node(n) => TxnResultJson {
            node: Some(n.into()),
            ..TxnResultJson::default()
        },
        TxnResult::Service(s) => TxnResultJson {
            service: Some(s.into()),
            ..TxnResultJson::default()
        },
        TxnResult::Check(c) => TxnResultJson {
            check: Some(c.into()),
            ..TxnResultJson::default()
        },
    })
}

pub async fn txn(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    let converted = match decode_ops(
        &ctx.body,
        ctx.config.kv_max_value_size,
        &ctx.config.datacenter,
    )? {
        Ok(ops) => ops,
        Err(errors) => return conflict(&ctx, errors),
    };
    let authz = ctx.authorizer().await?;
    let denied = {
        let r = ctx
            .catalog
            .reader()
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        vet_ops(&authz, &converted, &r)
    };
    if !denied.is_empty() {
        return conflict(&ctx, denied);
    }
    let (index, resp) = ctx.agent.write(Command::Txn(converted)).await?;
    match resp {
        CmdResponse::Txn(Ok(results)) => {
            let results = results
                .iter()
                .filter_map(|r| result_json(&authz, r))
                .collect();
            let mut resp = ctx.json(&TxnResponseJson {
                results: Some(results),
                errors: None,
            });
            set_meta(&mut resp, &ctx, index, opts.consistency);
            Ok(resp)
        }
        CmdResponse::Txn(Err(errs)) => conflict(
            &ctx,
            errs.into_iter()
                .map(|e| TxnErrorJson {
                    op_index: e.op_index,
                    what: e.what,
                })
                .collect(),
        ),
        other => Err(ApiError::Internal(format!(
            "unexpected transaction response: {other:?}"
        ))),
    }
}
