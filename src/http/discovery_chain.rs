//! `GET|POST /v1/discovery-chain/:service`: the compiled discovery chain,
//! as Consul's `DiscoveryChain.Get` answers it for a service whose traffic
//! is not split or routed: one resolver node whose target is the service in
//! this datacenter. The protocol is the `OverrideProtocol` of a POST body,
//! else the service's `service-defaults` `Protocol`, else the `protocol` of
//! the global `proxy-defaults` `Config`, else `tcp`; the connect timeout is
//! the override, else the `service-resolver`'s `ConnectTimeout`, else 5 s.
//! A chain compiled with overrides is not the default one and carries a
//! customization hash. `service:read` on the service.

use super::decode::decode_body;
use super::wire::{require, set_meta, ApiError, ApiResult, Ctx};
use crate::acl::{Access, Resource};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The overrides a POST may carry (Consul's `discoveryChainReadRequest`).
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct Overrides {
    override_connect_timeout: String,
    override_protocol: String,
    override_mesh_gateway: Option<Value>,
}

impl Overrides {
    fn any(&self) -> bool {
        !self.override_connect_timeout.is_empty()
            || !self.override_protocol.is_empty()
            || self.override_mesh_gateway.is_some()
    }

    /// Eight hex digits that change with the overrides (Consul hashes its
    /// request the same way, with its own function).
    fn hash(&self) -> String {
        let text = format!(
            "{}\u{0}{}\u{0}{}",
            self.override_connect_timeout,
            self.override_protocol,
            self.override_mesh_gateway
                .as_ref()
                .map(Value::to_string)
                .unwrap_or_default()
        );
        let mut h: u32 = 0x811c_9dc5;
        for b in text.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        format!("{h:08x}")
    }
}

/// The string field `key` of a config entry's document, if set.
fn entry_field(
    entry: &Option<crate::catalog::operator::ConfigEntry>,
    path: &[&str],
) -> Option<String> {
    let doc: Value = serde_json::from_str(&entry.as_ref()?.body).ok()?;
    let mut v = &doc;
    for key in path {
        v = v
            .as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))?
            .1;
    }
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

pub async fn discovery_chain(ctx: Ctx) -> ApiResult {
    let service = ctx.rest.clone();
    if service.is_empty() {
        return Err(ApiError::bad("Missing chain name"));
    }
    let overrides: Overrides = if ctx.method == axum::http::Method::POST && !ctx.body.is_empty() {
        decode_body(&ctx.body)?
    } else {
        Overrides::default()
    };
    let dc = ctx
        .query
        .get("compile-dc")
        .filter(|d| !d.is_empty())
        .unwrap_or(&ctx.config.datacenter)
        .to_string();
    if dc != ctx.config.datacenter {
        return Err(ApiError::Internal("No path to datacenter".into()));
    }
    if !overrides.override_connect_timeout.is_empty() {
        crate::duration::parse(&overrides.override_connect_timeout).map_err(|e| {
            ApiError::bad(format!("Request decode failed: time: invalid duration {e}"))
        })?;
    }
    let authz = ctx.authorizer().await?;
    require(&authz, Resource::Service, &service, Access::Read)?;

    let r = ctx.catalog.reader()?;
    let defaults = r.config_entry("service-defaults", &service)?;
    let proxy = r.config_entry("proxy-defaults", "global")?;
    let resolver = r.config_entry("service-resolver", &service)?;
    let index = r.config_entries_index()?;
    drop(r);

    let protocol = Some(overrides.override_protocol.clone())
        .filter(|p| !p.is_empty())
        .or_else(|| entry_field(&defaults, &["Protocol"]))
        .or_else(|| entry_field(&proxy, &["Config", "protocol"]))
        .unwrap_or_else(|| "tcp".into())
        .to_ascii_lowercase();
    let timeout = Some(overrides.override_connect_timeout.clone())
        .filter(|t| !t.is_empty())
        .or_else(|| entry_field(&resolver, &["ConnectTimeout"]))
        .and_then(|t| crate::duration::parse(&t).ok())
        .unwrap_or(std::time::Duration::from_secs(5));
    let timeout = crate::duration::format(timeout);
    let default = !overrides.any() && defaults.is_none() && resolver.is_none() && proxy.is_none();
    let mesh_gateway = overrides
        .override_mesh_gateway
        .clone()
        .unwrap_or_else(|| json!({}));

    let target_id = format!("{service}.default.default.{dc}");
    let node_name = format!("resolver:{target_id}");
    let mut chain = Map::new();
    chain.insert("ServiceName".into(), service.clone().into());
    chain.insert("Namespace".into(), "default".into());
    chain.insert("Partition".into(), "default".into());
    chain.insert("Datacenter".into(), dc.clone().into());
    if overrides.any() {
        chain.insert("CustomizationHash".into(), overrides.hash().into());
    }
    if default {
        chain.insert("Default".into(), true.into());
    }
    chain.insert("Protocol".into(), protocol.into());
    chain.insert("ServiceMeta".into(), Value::Null);
    chain.insert("EnvoyExtensions".into(), Value::Null);
    chain.insert("StartNode".into(), node_name.clone().into());
    chain.insert(
        "Nodes".into(),
        json!({ node_name: {
            "Type": "resolver",
            "Name": target_id,
            "Resolver": {
                "ConnectTimeout": timeout,
                "Default": resolver.is_none(),
                "Target": target_id,
            },
        }}),
    );
    chain.insert(
        "Targets".into(),
        json!({ target_id.clone(): {
            "ID": target_id,
            "Service": service,
            "ServiceSubset": "",
            "Namespace": "default",
            "Partition": "default",
            "Datacenter": dc,
            "Peer": "",
            "MeshGateway": mesh_gateway,
            "Subset": {},
            "Locality": null,
            "TransparentProxy": {},
            "ConnectTimeout": timeout,
            "SNI": "",
            "Name": "",
        }}),
    );
    let mut resp = ctx.json(&json!({ "Chain": Value::Object(chain) }));
    let opts = ctx.read_opts()?;
    set_meta(&mut resp, &ctx, index.max(1), opts.consistency);
    Ok(resp)
}
