//! `/v1/config`: config entries, as JSON documents validated at this edge
//! (kind, name, the singleton kinds' fixed names) and stored whole in the
//! replicated table of `catalog::operator`.
//!
//! - `PUT /v1/config[?cas=<index>]` writes one (`true`/`false`);
//! - `GET /v1/config/<kind>` lists a kind, `GET /v1/config/<kind>/<name>`
//!   reads one (404 `Config entry not found for "<kind>" / "<name>"`);
//! - `DELETE /v1/config/<kind>/<name>[?cas=<index>]` (`{}`, or
//!   `true`/`false` with `?cas`).
//!
//! ACLs as Consul's per kind: service-scoped kinds need `service:read` /
//! `service:write` on the entry's name, mesh-wide kinds `operator` (Consul's
//! `mesh` rule falls back to `operator` when a token has none); some kinds
//! are readable by anyone. Lists drop the entries the token cannot read.

use super::blocking::{self, Watch};
use super::wire::{
    require, require_global, set_filtered_by_acls, set_meta, ApiError, ApiResult, Ctx,
};
use crate::acl::{Access, Authorizer, Global, Resource};
use crate::catalog::command::{Command, Response as CmdResponse};
use crate::catalog::operator::{ConfigEntry, OperatorOp};
use serde_json::{Map, Value};

/// What reading or writing an entry of a kind needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Anyone (Consul's `CanRead` returns true).
    Anyone,
    /// `service:<access>` on the entry's name.
    Service,
    /// `operator:<access>` (Consul's `mesh`, which falls back to it).
    Mesh,
}

/// One supported kind: its name, read and write rules, and the one name
/// it may have when it is a singleton.
pub struct Kind {
    pub name: &'static str,
    pub read: Rule,
    pub write: Rule,
    fixed_name: Option<&'static str>,
}

const KINDS: &[Kind] = &[
    kind("service-defaults", Rule::Service, Rule::Service, None),
    kind("proxy-defaults", Rule::Anyone, Rule::Mesh, Some("global")),
    kind("service-router", Rule::Service, Rule::Service, None),
    kind("service-splitter", Rule::Service, Rule::Service, None),
    kind("service-resolver", Rule::Service, Rule::Service, None),
    kind("ingress-gateway", Rule::Service, Rule::Mesh, None),
    kind("terminating-gateway", Rule::Service, Rule::Mesh, None),
    kind("service-intentions", Rule::Service, Rule::Service, None),
    kind("mesh", Rule::Anyone, Rule::Mesh, Some("mesh")),
    kind("exported-services", Rule::Mesh, Rule::Mesh, Some("default")),
    kind("api-gateway", Rule::Service, Rule::Mesh, None),
    kind("http-route", Rule::Mesh, Rule::Mesh, None),
    kind("tcp-route", Rule::Mesh, Rule::Mesh, None),
    kind("inline-certificate", Rule::Mesh, Rule::Mesh, None),
    kind("file-system-certificate", Rule::Mesh, Rule::Mesh, None),
    kind("jwt-provider", Rule::Mesh, Rule::Mesh, None),
];

const fn kind(
    name: &'static str,
    read: Rule,
    write: Rule,
    fixed_name: Option<&'static str>,
) -> Kind {
    Kind {
        name,
        read,
        write,
        fixed_name,
    }
}

/// The kind named `name` (Consul's `MakeConfigEntry`); its error text.
pub fn lookup(name: &str) -> Result<&'static Kind, String> {
    KINDS
        .iter()
        .find(|k| k.name == name)
        .ok_or_else(|| format!("invalid config entry kind: {name}"))
}

impl Kind {
    /// Consul's `Validate` of the name: required, and the singletons'
    /// own. The mesh entry is always named `mesh`, whatever is sent.
    fn check_name(&self, name: &str) -> Result<String, String> {
        match (self.name, self.fixed_name) {
            ("mesh", Some(fixed)) => Ok(fixed.to_string()),
            ("exported-services", Some(fixed)) if name != fixed => {
                Err(format!("exported-services Name must be {fixed:?}"))
            }
            (_, Some(fixed)) if name != fixed => Err(format!(
                "invalid name ({name:?}), only {fixed:?} is supported"
            )),
            _ if name.is_empty() => Err("Name is required".into()),
            _ => Ok(name.to_string()),
        }
    }

    pub fn allows(&self, authz: &Authorizer, name: &str, access: Access) -> bool {
        match self.rule(access) {
            Rule::Anyone => true,
            Rule::Service => authz.allows(Resource::Service, name, access),
            Rule::Mesh => authz.allows_global(Global::Operator, access),
        }
    }

    fn rule(&self, access: Access) -> Rule {
        if access == Access::Write {
            self.write
        } else {
            self.read
        }
    }

    /// [`Kind::allows`], or Consul's 403 naming what is missing.
    fn require(&self, authz: &Authorizer, name: &str, access: Access) -> Result<(), ApiError> {
        match self.rule(access) {
            Rule::Anyone => Ok(()),
            Rule::Service => require(authz, Resource::Service, name, access),
            Rule::Mesh => require_global(authz, Global::Operator, access),
        }
    }
}

/// A top-level field by its Go name or lower-case spelling, as Consul's
/// `DecodeConfigEntry` finds `Kind`/`kind`.
fn take_field(doc: &mut Map<String, Value>, key: &str) -> Option<Value> {
    doc.remove(key)
        .or_else(|| doc.remove(&key.to_ascii_lowercase()))
}

/// Parses a `PUT` body into the entry to store.
fn parse_entry(body: &[u8]) -> Result<ConfigEntry, ApiError> {
    let decoding = |e: String| ApiError::bad(format!("Request decoding failed: {e}"));
    let value: Value = serde_json::from_slice(body).map_err(|e| decoding(e.to_string()))?;
    let Value::Object(mut doc) = value else {
        return Err(decoding(
            "Payload does not contain a Kind/kind key at the top level".into(),
        ));
    };
    let kind_name = match take_field(&mut doc, "Kind") {
        Some(Value::String(k)) => k,
        Some(_) => return Err(decoding("Kind value in payload is not a string".into())),
        None => {
            return Err(decoding(
                "Payload does not contain a Kind/kind key at the top level".into(),
            ))
        }
    };
    let kind = lookup(&kind_name).map_err(decoding)?;
    let name = match take_field(&mut doc, "Name") {
        Some(Value::String(n)) => n,
        None | Some(Value::Null) => String::new(),
        Some(_) => return Err(decoding("'Name' expected type 'string'".into())),
    };
    let name = kind.check_name(&name).map_err(ApiError::bad)?;
    for key in ["CreateIndex", "ModifyIndex"] {
        take_field(&mut doc, key);
    }
    Ok(ConfigEntry {
        kind: kind.name.to_string(),
        name,
        body: Value::Object(doc).to_string(),
        create_index: 0,
        modify_index: 0,
    })
}

/// An entry as Consul renders it: `Kind`, `Name`, the document's own
/// fields, then the raft indexes.
pub fn entry_json(e: &ConfigEntry) -> Value {
    let mut out = Map::new();
    out.insert("Kind".into(), e.kind.clone().into());
    out.insert("Name".into(), e.name.clone().into());
    if let Ok(Value::Object(doc)) = serde_json::from_str::<Value>(&e.body) {
        out.extend(doc);
    }
    out.insert("CreateIndex".into(), e.create_index.into());
    out.insert("ModifyIndex".into(), e.modify_index.into());
    Value::Object(out)
}

/// A `?cas=` value, with Go's `strconv` text when it is not a number.
fn cas(ctx: &Ctx) -> Result<Option<u64>, ApiError> {
    match ctx.query.get("cas").filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(c) => c.parse::<u64>().map(Some).map_err(|_| {
            ApiError::bad(format!("strconv.ParseUint: parsing {c:?}: invalid syntax"))
        }),
    }
}

async fn write_op(ctx: &Ctx, op: OperatorOp) -> Result<bool, ApiError> {
    match ctx.consensus.write(Command::Operator(op)).await?.1 {
        CmdResponse::Bool(b) => Ok(b),
        CmdResponse::Rejected(why) => Err(ApiError::Internal(why)),
        other => Err(ApiError::Internal(format!(
            "unexpected response: {other:?}"
        ))),
    }
}

/// `PUT /v1/config[?cas=<index>]`.
pub async fn apply(ctx: Ctx) -> ApiResult {
    let entry = parse_entry(&ctx.body)?;
    let cas = cas(&ctx)?;
    let authz = ctx.authorizer().await?;
    lookup(&entry.kind)
        .map_err(ApiError::bad)?
        .require(&authz, &entry.name, Access::Write)?;
    let done = write_op(&ctx, OperatorOp::SetConfigEntry { entry, cas }).await?;
    Ok(ctx.json(&done))
}

/// `GET|DELETE /v1/config/<kind>[/<name>]`.
pub async fn item(ctx: Ctx) -> ApiResult {
    let rest = ctx.rest.clone();
    let (kind, name) = match rest.split_once('/') {
        Some((k, n)) => (k.to_string(), Some(n.to_string())),
        None => (rest.clone(), None),
    };
    if ctx.method == axum::http::Method::DELETE {
        let Some(name) = name else {
            return Err(ApiError::NotFound(
                "Must provide both a kind and name to delete".into(),
            ));
        };
        return delete(ctx, &kind, &name).await;
    }
    match name {
        Some(name) => get(ctx, &kind, &name).await,
        None if kind.is_empty() => Err(ApiError::NotFound(
            "Must provide either a kind or both kind and name".into(),
        )),
        None => list(ctx, &kind).await,
    }
}

async fn get(ctx: Ctx, kind_name: &str, name: &str) -> ApiResult {
    let opts = ctx.read_opts()?;
    // Consul's RPC refuses an unknown kind (a 500, as its RPC errors are).
    let kind = lookup(kind_name).map_err(ApiError::Internal)?;
    let authz = ctx.authorizer().await?;
    kind.require(&authz, name, Access::Read)?;
    let (entry, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        Ok((r.config_entry(kind.name, name)?, r.config_entries_index()?))
    })
    .await?;
    let Some(entry) = entry else {
        return Err(ApiError::NotFound(format!(
            "Config entry not found for {kind_name:?} / {name:?}"
        )));
    };
    let mut resp = ctx.json(&entry_json(&entry));
    set_meta(&mut resp, &ctx, index, opts.consistency);
    Ok(resp)
}

async fn list(ctx: Ctx, kind_name: &str) -> ApiResult {
    let opts = ctx.read_opts()?;
    let kind = lookup(kind_name).map_err(ApiError::Internal)?;
    let authz = ctx.authorizer().await?;
    let mut filtered = false;
    let (entries, index) = blocking::query(&ctx, &opts, Watch::Catalog, |r| {
        let mut entries = r.config_entries(kind.name)?;
        let before = entries.len();
        entries.retain(|e| kind.allows(&authz, &e.name, Access::Read));
        filtered = entries.len() != before;
        let json: Vec<Value> = entries.iter().map(entry_json).collect();
        Ok((json, r.config_entries_index()?))
    })
    .await?;
    let mut resp = ctx.json(&entries);
    set_meta(&mut resp, &ctx, index, opts.consistency);
    if filtered {
        set_filtered_by_acls(&mut resp, &authz);
    }
    Ok(resp)
}

async fn delete(ctx: Ctx, kind_name: &str, name: &str) -> ApiResult {
    let kind = lookup(kind_name).map_err(ApiError::bad)?;
    let name = kind.check_name(name).unwrap_or_else(|_| name.to_string());
    let cas = cas(&ctx)?;
    let authz = ctx.authorizer().await?;
    kind.require(&authz, &name, Access::Write)?;
    let op = OperatorOp::DeleteConfigEntry {
        kind: kind.name.to_string(),
        name,
        cas,
    };
    let deleted = write_op(&ctx, op).await?;
    // Consul answers `{}` to a plain delete, the outcome to a CAS one.
    match cas {
        Some(_) => Ok(ctx.json(&deleted)),
        None => Ok(ctx.json(&serde_json::json!({}))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        match parse_entry(body.as_bytes()) {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn kind_and_name_are_validated_with_consuls_texts() {
        assert_eq!(
            err(r#"{"Name":"web"}"#),
            "Request decoding failed: Payload does not contain a Kind/kind key at the top level"
        );
        assert_eq!(
            err(r#"{"Kind":"nope","Name":"web"}"#),
            "Request decoding failed: invalid config entry kind: nope"
        );
        assert_eq!(err(r#"{"Kind":"service-defaults"}"#), "Name is required");
        assert_eq!(
            err(r#"{"Kind":"proxy-defaults","Name":"web"}"#),
            r#"invalid name ("web"), only "global" is supported"#
        );
        assert_eq!(
            err(r#"{"Kind":"exported-services","Name":"x"}"#),
            r#"exported-services Name must be "default""#
        );
        assert!(err("{").starts_with("Request decoding failed: "));
    }

    #[test]
    fn an_entry_keeps_its_document_and_gets_indexes() {
        let mut e = parse_entry(
            br#"{"kind":"service-defaults","name":"web","Protocol":"http","ModifyIndex":4}"#,
        )
        .unwrap();
        assert_eq!(
            (e.kind.as_str(), e.name.as_str()),
            ("service-defaults", "web")
        );
        e.create_index = 7;
        e.modify_index = 9;
        let v = entry_json(&e);
        assert_eq!(v["Kind"], "service-defaults");
        assert_eq!(v["Name"], "web");
        assert_eq!(v["Protocol"], "http");
        assert_eq!(
            (v["CreateIndex"].as_u64(), v["ModifyIndex"].as_u64()),
            (Some(7), Some(9))
        );
        let mesh = parse_entry(br#"{"Kind":"mesh"}"#).unwrap();
        assert_eq!(mesh.name, "mesh");
    }
}
