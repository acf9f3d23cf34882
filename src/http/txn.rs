//! `PUT /v1/txn`: up to 128 KV operations (session locks included) applied atomically. 200 with
//! `{"Results":[...],"Errors":null}`, or 409 with `{"Results":null,
//! "Errors":[{"OpIndex":n,"What":"..."}]}` when any operation fails (then
//! nothing is written).
//!
//! ACLs as in Consul's `kvsPreApply`, per operation before anything is
//! applied: writes need `key:write` (`delete-tree` write on the whole
//! tree), the checks (`check-index`, `check-session`, `check-not-exists`)
//! `key:read`; a denied operation is one of the 409's errors. Reads are
//! not refused but their results are cut to the keys the token can read.

use super::decode::decode_body;
use super::types::DirEntryJson;
use super::wire::{require, set_meta, ApiError, ApiResult, Ctx};
use crate::acl::{Access, Authorizer, Resource};
use crate::catalog::command::{Command, KvOp, Response as CmdResponse, TxnOp};
use axum::http::StatusCode;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

const MAX_TXN_OPS: usize = 128;

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct TxnOpIn {
    #[serde(rename = "KV")]
    kv: Option<KvOpIn>,
    node: Option<Value>,
    service: Option<Value>,
    check: Option<Value>,
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

#[derive(Serialize)]
struct TxnResultJson {
    #[serde(rename = "KV")]
    kv: DirEntryJson,
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
        let Some(kv) = op.kv else {
            let what = if op.node.is_some() {
                "Node operations are not supported"
            } else if op.service.is_some() {
                "Service operations are not supported"
            } else if op.check.is_some() {
                "Check operations are not supported"
            } else {
                "operation has no KV, Node, Service or Check body"
            };
            errors.push(TxnErrorJson {
                op_index: i,
                what: what.into(),
            });
            continue;
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
fn vet_op(authz: &Authorizer, op: &TxnOp) -> Result<(), ApiError> {
    let (key, access) = match op {
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
fn vet_ops(authz: &Authorizer, ops: &[TxnOp]) -> Vec<TxnErrorJson> {
    let mut errors = Vec::new();
    if !authz.enabled() {
        return errors;
    }
    for (i, op) in ops.iter().enumerate() {
        if let Err(e) = vet_op(authz, op) {
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

pub async fn txn(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    let converted = match decode_ops(&ctx.body, ctx.config.kv_max_value_size)? {
        Ok(ops) => ops,
        Err(errors) => return conflict(&ctx, errors),
    };
    let authz = ctx.authorizer().await?;
    let denied = vet_ops(&authz, &converted);
    if !denied.is_empty() {
        return conflict(&ctx, denied);
    }
    let (index, resp) = ctx.agent.write(Command::Txn(converted)).await?;
    match resp {
        CmdResponse::Txn(Ok(results)) => {
            let results = results
                .iter()
                .filter(|r| authz.allows(Resource::Key, &r.entry.key, Access::Read))
                .map(|r| TxnResultJson {
                    kv: DirEntryJson::new(&r.entry, r.include_value),
                })
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
