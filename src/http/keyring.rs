//! `/v1/operator/keyring`: the gossip keyring of the whole datacenter.
//! `GET` lists the keys every member has installed, `POST` installs a key,
//! `PUT` makes it the primary and `DELETE` removes it, each on every alive
//! member ([`crate::gossip::Gossip::key_operation`]). Consul answers per
//! gossip pool; cairn has one, the datacenter's LAN, so the answer has one
//! entry. A pool where some member refused or did not answer turns the
//! whole request into Consul's 500 (`keyringErrorsOrNil`).

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
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
struct KeyringResponseJson {
    #[serde(rename = "WAN")]
    wan: bool,
    datacenter: String,
    segment: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
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

/// `local-only`: only for lists. With one pool and no WAN it changes
/// nothing else.
fn local_only(ctx: &Ctx) -> Result<(), ApiError> {
    let Some(raw) = ctx.query.get("local-only").filter(|v| !v.is_empty()) else {
        return Ok(());
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
    Ok(())
}

/// `GET|POST|PUT|DELETE /v1/operator/keyring`. Needs `keyring:read` to
/// list and `keyring:write` to change, as in Consul.
pub async fn keyring(ctx: Ctx) -> ApiResult {
    let key = if ctx.method == Method::GET {
        String::new()
    } else {
        decode_body::<KeyringBody>(&ctx.body)?.key
    };
    relay_factor(&ctx)?;
    local_only(&ctx)?;
    let authz = ctx.authorizer().await?;
    let access = if ctx.method == Method::GET {
        Access::Read
    } else {
        Access::Write
    };
    require_global(&authz, Global::Keyring, access)?;

    let response = match operation(&ctx.method, &key) {
        Ok(op) => ctx.gossip.key_operation(op).await,
        // serf decodes the key before it sends the query: nothing is asked.
        Err(e) => KeyResponse {
            error: Some(e),
            ..KeyResponse::default()
        },
    };
    let dc = &ctx.config.datacenter;
    if let Some(errors) = pool_errors(dc, &response) {
        return Err(ApiError::Internal(errors));
    }
    if ctx.method != Method::GET {
        return Ok(empty_ok());
    }
    Ok(ctx.json(&[KeyringResponseJson {
        wan: false,
        datacenter: dc.clone(),
        segment: String::new(),
        messages: response.messages,
        keys: response.keys,
        primary_keys: response.primary_keys,
        num_nodes: response.num_nodes,
    }]))
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

/// Consul's `keyringErrorsOrNil` for the LAN pool: the pool's error, then
/// each member's message, as one go-multierror text.
fn pool_errors(dc: &str, r: &KeyResponse) -> Option<String> {
    let error = r.error.as_ref()?;
    let mut lines = vec![format!("{dc} (LAN) error: {error}")];
    lines.extend(r.messages.iter().map(|(node, m)| format!("{node}: {m}")));
    Some(multierror(&lines))
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
            pool_errors("dc1", &refused).unwrap(),
            "3 errors occurred:\n\t* dc1 (LAN) error: 2/3 nodes reported failure\n\t* s1: Removing the primary key is not allowed\n\t* s2: Removing the primary key is not allowed\n\n"
        );
        let bad = KeyResponse {
            error: Some("illegal base64 data at input byte 4".into()),
            ..KeyResponse::default()
        };
        assert_eq!(
            pool_errors("dc1", &bad).unwrap(),
            "1 error occurred:\n\t* dc1 (LAN) error: illegal base64 data at input byte 4\n\n"
        );
        assert_eq!(pool_errors("dc1", &KeyResponse::default()), None);
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
