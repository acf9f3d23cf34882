//! `PUT /v1/txn`: up to 128 KV operations (session locks included) applied atomically. 200 with
//! `{"Results":[...],"Errors":null}`, or 409 with `{"Results":null,
//! "Errors":[{"OpIndex":n,"What":"..."}]}` when any operation fails (then
//! nothing is written).

use super::decode::decode_body;
use super::types::DirEntryJson;
use super::wire::{set_meta, ApiError, ApiResult, Ctx};
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

pub async fn txn(ctx: Ctx) -> ApiResult {
    let opts = ctx.read_opts()?;
    let converted = match decode_ops(&ctx.body, ctx.config.kv_max_value_size)? {
        Ok(ops) => ops,
        Err(errors) => return conflict(&ctx, errors),
    };
    let (index, resp) = ctx.agent.write(Command::Txn(converted)).await?;
    match resp {
        CmdResponse::Txn(Ok(results)) => {
            let results = results
                .iter()
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
