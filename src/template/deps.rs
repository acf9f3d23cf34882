//! The data a template can depend on, one variant per kind of Consul
//! query consul-template makes (`dependency/*.go`): the argument grammar of
//! each function (`"[tag.]name[?ns=..][@dc][~near][|status,...]"`), the
//! HTTP request each dependency is watched with, and how the answer is
//! decoded into the result shapes templates see (`.Address`, `.Port`,
//! `.Tags` sorted, `.Key` relative to the prefix, ...). Two calls that
//! mean the same query (`service "web"` and `service "web|passing"`) are
//! the same [`Dependency`], so they share one watch.

use super::engine::Value;
use base64::Engine as _;
use regex::Regex;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::OnceLock;

/// A malformed function argument, with consul-template's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(String);

/// Health statuses `service` can filter on.
pub const STATUSES: &[&str] = &["any", "critical", "maintenance", "passing", "warning"];

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Scope {
    pub dc: Option<String>,
    /// `ns`, `partition`, `peer`, `sameness-group`, sorted by key.
    pub query: Vec<(String, String)>,
}

/// One watched query.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dependency {
    HealthService {
        name: String,
        tag: Option<String>,
        near: Option<String>,
        /// Sorted; `["passing"]` unless the call names statuses.
        filters: Vec<String>,
        scope: Scope,
    },
    CatalogServices(Scope),
    CatalogNodes {
        near: Option<String>,
        scope: Scope,
    },
    /// `node` with no name is the agent's own node.
    CatalogNode {
        name: Option<String>,
        scope: Scope,
    },
    KvGet {
        key: String,
        scope: Scope,
    },
    KvList {
        prefix: String,
        scope: Scope,
    },
    /// `datacenters`, optionally keeping only those that answer.
    Datacenters {
        only_reachable: bool,
    },
}

const DC: &str = r"(@(?P<dc>[[:word:]\.\-_]+))?";
const QUERY: &str = r"(\?(?P<query>[[:word:]\-_=\&]+))?";
const NEAR: &str = r"(~(?P<near>[[:word:]\.\-_]+))?";
const FILTER: &str = r"(\|(?P<filter>[[:word:]\,]+))?";
const TAG: &str = r"((?P<tag>[[:word:]=:\.\-_]+)\.)?";
const SERVICE_NAME: &str = r"(?P<name>[[:word:]\-_]+)";
const NODE_NAME: &str = r"(?P<name>[[:word:]\.\-_]+)";

fn grammar(cell: &'static OnceLock<Regex>, parts: &[&str]) -> &'static Regex {
    cell.get_or_init(|| {
        let pattern = format!(r"\A{}\z", parts.concat());
        // The patterns are constants of this file; a typo fails every test.
        Regex::new(&pattern).unwrap_or_else(|e| panic!("query grammar {pattern}: {e}"))
    })
}

fn service_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    grammar(&RE, &[TAG, SERVICE_NAME, QUERY, DC, NEAR, FILTER])
}

fn services_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    grammar(&RE, &[QUERY, DC])
}

fn nodes_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    grammar(&RE, &[QUERY, DC, NEAR])
}

fn node_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    grammar(&RE, &[NODE_NAME, QUERY, DC])
}

fn key_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    grammar(&RE, &[r"/?(?P<key>[^@\?]+)", QUERY, DC])
}

fn prefix_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    grammar(&RE, &[r"/?(?P<prefix>[^@\?]+)", QUERY, DC])
}

fn capture(c: &regex::Captures<'_>, name: &str) -> Option<String> {
    c.name(name)
        .map(|m| m.as_str().to_string())
        .filter(|s| !s.is_empty())
}

fn scope(c: &regex::Captures<'_>, label: &str) -> Result<Scope, QueryError> {
    let mut query = Vec::new();
    if let Some(raw) = capture(c, "query") {
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !matches!(k, "ns" | "peer" | "partition" | "sameness-group") {
                return Err(QueryError(format!(
                    "{label}: invalid query parameter key {k:?} in query {raw:?}: supported keys: ns,peer,partition,sameness-group"
                )));
            }
            query.push((k.to_string(), v.to_string()));
        }
        query.sort();
    }
    Ok(Scope {
        dc: capture(c, "dc"),
        query,
    })
}

impl Dependency {
    /// `service` (consul-template joins its arguments with `|`, so
    /// `service "web" "any"` is `service "web|any"`).
    pub fn health_service(s: &str) -> Result<Dependency, QueryError> {
        let c = service_re()
            .captures(s)
            .ok_or_else(|| QueryError(format!("health.service: invalid format: {s:?}")))?;
        let mut filters = Vec::new();
        if let Some(raw) = capture(&c, "filter") {
            for f in raw.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                if !STATUSES.contains(&f) {
                    return Err(QueryError(format!(
                        "health.service: invalid filter: {f:?} in {s:?}"
                    )));
                }
                filters.push(f.to_string());
            }
            filters.sort();
            filters.dedup();
        }
        if filters.is_empty() {
            filters.push("passing".into());
        }
        Ok(Dependency::HealthService {
            name: capture(&c, "name").unwrap_or_default(),
            tag: capture(&c, "tag"),
            near: capture(&c, "near"),
            filters,
            scope: scope(&c, "health.service")?,
        })
    }

    pub fn catalog_services(s: &str) -> Result<Dependency, QueryError> {
        let c = services_re()
            .captures(s)
            .ok_or_else(|| QueryError(format!("catalog.services: invalid format: {s:?}")))?;
        Ok(Dependency::CatalogServices(scope(&c, "catalog.services")?))
    }

    pub fn catalog_nodes(s: &str) -> Result<Dependency, QueryError> {
        let c = nodes_re()
            .captures(s)
            .ok_or_else(|| QueryError(format!("catalog.nodes: invalid format: {s:?}")))?;
        Ok(Dependency::CatalogNodes {
            near: capture(&c, "near"),
            scope: scope(&c, "catalog.nodes")?,
        })
    }

    pub fn catalog_node(s: &str) -> Result<Dependency, QueryError> {
        if s.is_empty() {
            return Ok(Dependency::CatalogNode {
                name: None,
                scope: Scope::default(),
            });
        }
        let c = node_re()
            .captures(s)
            .ok_or_else(|| QueryError(format!("catalog.node: invalid format: {s:?}")))?;
        Ok(Dependency::CatalogNode {
            name: capture(&c, "name"),
            scope: scope(&c, "catalog.node")?,
        })
    }

    pub fn kv_get(s: &str) -> Result<Dependency, QueryError> {
        let c = key_re()
            .captures(s)
            .ok_or_else(|| QueryError(format!("kv.get: invalid format: {s:?}")))?;
        Ok(Dependency::KvGet {
            key: capture(&c, "key").unwrap_or_default(),
            scope: scope(&c, "kv.get")?,
        })
    }

    pub fn kv_list(s: &str) -> Result<Dependency, QueryError> {
        let c = prefix_re()
            .captures(s)
            .ok_or_else(|| QueryError(format!("kv.list: invalid format: {s:?}")))?;
        Ok(Dependency::KvList {
            prefix: capture(&c, "prefix").unwrap_or_default(),
            scope: scope(&c, "kv.list")?,
        })
    }

    /// Whether the dependency is watched with blocking queries (the
    /// datacenter list is polled, as consul-template does).
    pub fn blocking(&self) -> bool {
        !matches!(self, Dependency::Datacenters { .. })
    }

    /// The path and query parameters of the request, given the agent's node
    /// name for `node` without a name.
    pub fn request(&self, agent_node: Option<&str>) -> (String, Vec<(String, String)>) {
        let mut params = Vec::new();
        let add_scope = |params: &mut Vec<(String, String)>, s: &Scope| {
            if let Some(dc) = &s.dc {
                params.push(("dc".into(), dc.clone()));
            }
            params.extend(s.query.iter().cloned());
        };
        let path = match self {
            Dependency::HealthService {
                name,
                tag,
                near,
                filters,
                scope,
            } => {
                add_scope(&mut params, scope);
                if let Some(t) = tag {
                    params.push(("tag".into(), t.clone()));
                }
                if let Some(n) = near {
                    params.push(("near".into(), n.clone()));
                }
                // Only a passing-only filter is left to the server.
                if filters.len() == 1 && filters[0] == "passing" {
                    params.push(("passing".into(), "1".into()));
                }
                format!("/v1/health/service/{}", escape_path(name))
            }
            Dependency::CatalogServices(scope) => {
                add_scope(&mut params, scope);
                "/v1/catalog/services".into()
            }
            Dependency::CatalogNodes { near, scope } => {
                add_scope(&mut params, scope);
                if let Some(n) = near {
                    params.push(("near".into(), n.clone()));
                }
                "/v1/catalog/nodes".into()
            }
            Dependency::CatalogNode { name, scope } => {
                add_scope(&mut params, scope);
                let name = name.as_deref().or(agent_node).unwrap_or_default();
                format!("/v1/catalog/node/{}", escape_path(name))
            }
            Dependency::KvGet { key, scope } => {
                add_scope(&mut params, scope);
                format!("/v1/kv/{}", escape_path(key))
            }
            Dependency::KvList { prefix, scope } => {
                add_scope(&mut params, scope);
                params.push(("recurse".into(), String::new()));
                format!("/v1/kv/{}", escape_path(prefix))
            }
            Dependency::Datacenters { .. } => "/v1/catalog/datacenters".into(),
        };
        (path, params)
    }

    /// Decodes a 200 (or, for KV, 404) answer into the value the template
    /// functions hand out.
    pub fn decode(&self, status: u16, body: &[u8]) -> Result<Value, DecodeError> {
        if status == 404 {
            return match self {
                Dependency::KvGet { .. } => Ok(Value::Nil),
                Dependency::KvList { .. } => Ok(Value::list(Vec::new())),
                _ => Err(DecodeError::Status(status, body_text(body))),
            };
        }
        if status != 200 {
            return Err(DecodeError::Status(status, body_text(body)));
        }
        let json = |e: serde_json::Error| DecodeError::Json(e.to_string());
        Ok(match self {
            Dependency::HealthService { filters, near, .. } => {
                let entries: Vec<HealthEntry> = serde_json::from_slice(body).map_err(json)?;
                health_services(entries, filters, near.is_none())
            }
            Dependency::CatalogServices(_) => {
                let services: BTreeMap<String, Option<Vec<String>>> =
                    serde_json::from_slice(body).map_err(json)?;
                Value::list(
                    services
                        .into_iter()
                        .map(|(name, tags)| {
                            Value::record(
                                "*dep.CatalogSnippet",
                                vec![("Name", Value::from(name)), ("Tags", sorted_tags(tags))],
                            )
                        })
                        .collect(),
                )
            }
            Dependency::CatalogNodes { near, .. } => {
                let mut nodes: Vec<NodeJson> = serde_json::from_slice(body).map_err(json)?;
                if near.is_none() {
                    nodes.sort_by(|a, b| (&a.node, &a.address).cmp(&(&b.node, &b.address)));
                }
                Value::list(nodes.into_iter().map(NodeJson::into_value).collect())
            }
            Dependency::CatalogNode { .. } => {
                let node: Option<CatalogNodeJson> = serde_json::from_slice(body).map_err(json)?;
                catalog_node(node)
            }
            Dependency::KvGet { .. } => {
                let entries: Vec<KvJson> = serde_json::from_slice(body).map_err(json)?;
                match entries.into_iter().next() {
                    Some(e) => Value::from(e.bytes()?),
                    None => Value::Nil,
                }
            }
            Dependency::KvList { prefix, .. } => {
                let entries: Vec<KvJson> = serde_json::from_slice(body).map_err(json)?;
                let mut pairs = Vec::with_capacity(entries.len());
                for e in entries {
                    pairs.push(e.into_pair(prefix)?);
                }
                Value::list(pairs)
            }
            Dependency::Datacenters { .. } => {
                let mut dcs: Vec<String> = serde_json::from_slice(body).map_err(json)?;
                dcs.sort();
                Value::list(dcs.into_iter().map(Value::from).collect())
            }
        })
    }
}

/// Consul-template's names for dependencies, as its logs show them.
impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn scoped(base: &str, s: &Scope) -> String {
            let mut out = base.to_string();
            if let Some(dc) = &s.dc {
                out.push('@');
                out.push_str(dc);
            }
            for (k, v) in &s.query {
                out.push_str(&format!("@{k}={v}"));
            }
            out
        }
        match self {
            Dependency::HealthService {
                name,
                tag,
                near,
                filters,
                scope,
            } => {
                let mut s = match tag {
                    Some(t) => format!("{t}.{name}"),
                    None => name.clone(),
                };
                s = scoped(&s, scope);
                if let Some(n) = near {
                    s.push('~');
                    s.push_str(n);
                }
                write!(f, "health.service({s}|{})", filters.join(","))
            }
            Dependency::CatalogServices(s) => match scoped("", s) {
                x if x.is_empty() => write!(f, "catalog.services"),
                x => write!(f, "catalog.services({x})"),
            },
            Dependency::CatalogNodes { near, scope } => {
                let mut s = scoped("", scope);
                if let Some(n) = near {
                    s.push('~');
                    s.push_str(n);
                }
                if s.is_empty() {
                    write!(f, "catalog.nodes")
                } else {
                    write!(f, "catalog.nodes({s})")
                }
            }
            Dependency::CatalogNode { name, scope } => {
                match scoped(name.as_deref().unwrap_or(""), scope) {
                    x if x.is_empty() => write!(f, "catalog.node"),
                    x => write!(f, "catalog.node({x})"),
                }
            }
            Dependency::KvGet { key, scope } => write!(f, "kv.get({})", scoped(key, scope)),
            Dependency::KvList { prefix, scope } => write!(f, "kv.list({})", scoped(prefix, scope)),
            Dependency::Datacenters { .. } => write!(f, "catalog.datacenters"),
        }
    }
}

/// An answer that could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("Unexpected response code: {0} ({1})")]
    Status(u16, String),
    #[error("invalid JSON in the response: {0}")]
    Json(String),
    #[error("a KV value is not valid base64: {0}")]
    Base64(String),
}

fn body_text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).trim().to_string()
}

/// Percent-escapes what a URL path cannot carry, keeping `/`.
fn escape_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'/'
            | b':'
            | b'@' => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn string_map(m: Option<HashMap<String, String>>) -> Value {
    Value::string_map(
        m.unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, Value::from(v)))
            .collect(),
    )
}

fn sorted_tags(tags: Option<Vec<String>>) -> Value {
    let mut tags = tags.unwrap_or_default();
    tags.sort();
    Value::list(tags.into_iter().map(Value::from).collect())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct NodeJson {
    #[serde(rename = "ID")]
    id: String,
    node: String,
    address: String,
    datacenter: String,
    tagged_addresses: Option<HashMap<String, String>>,
    meta: Option<HashMap<String, String>>,
}

impl NodeJson {
    fn into_value(self) -> Value {
        Value::record(
            "*dep.Node",
            vec![
                ("ID", Value::from(self.id)),
                ("Node", Value::from(self.node)),
                ("Address", Value::from(self.address)),
                ("Datacenter", Value::from(self.datacenter)),
                ("TaggedAddresses", string_map(self.tagged_addresses)),
                ("Meta", string_map(self.meta)),
            ],
        )
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ServiceAddressJson {
    address: String,
    port: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct WeightsJson {
    passing: i64,
    warning: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ServiceJson {
    #[serde(rename = "ID")]
    id: String,
    service: String,
    tags: Option<Vec<String>>,
    address: String,
    meta: Option<HashMap<String, String>>,
    port: i64,
    weights: Option<WeightsJson>,
    tagged_addresses: Option<HashMap<String, ServiceAddressJson>>,
    enable_tag_override: bool,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase", default)]
struct CheckJson {
    node: String,
    #[serde(rename = "CheckID")]
    check_id: String,
    name: String,
    status: String,
    notes: String,
    output: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    service_name: String,
    service_tags: Option<Vec<String>>,
    #[serde(rename = "Type")]
    kind: String,
    create_index: i64,
    modify_index: i64,
}

impl CheckJson {
    fn into_value(self) -> Value {
        Value::record(
            "*api.HealthCheck",
            vec![
                ("Node", Value::from(self.node)),
                ("CheckID", Value::from(self.check_id)),
                ("Name", Value::from(self.name)),
                ("Status", Value::from(self.status)),
                ("Notes", Value::from(self.notes)),
                ("Output", Value::from(self.output)),
                ("ServiceID", Value::from(self.service_id)),
                ("ServiceName", Value::from(self.service_name)),
                (
                    "ServiceTags",
                    Value::list(
                        self.service_tags
                            .unwrap_or_default()
                            .into_iter()
                            .map(Value::from)
                            .collect(),
                    ),
                ),
                ("Type", Value::from(self.kind)),
                ("CreateIndex", Value::Int(self.create_index)),
                ("ModifyIndex", Value::Int(self.modify_index)),
            ],
        )
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct HealthEntry {
    node: NodeJson,
    service: ServiceJson,
    checks: Option<Vec<CheckJson>>,
}

/// The Consul API client's aggregated status: maintenance beats critical
/// beats warning beats passing; an unknown status makes it `""`; no
/// checks at all is passing.
pub fn aggregated_status<'a>(checks: impl IntoIterator<Item = (&'a str, &'a str)>) -> &'static str {
    let (mut warning, mut critical, mut maintenance) = (false, false, false);
    for (id, status) in checks {
        if id == "_node_maintenance" || id.starts_with("_service_maintenance:") {
            maintenance = true;
            continue;
        }
        match status {
            "passing" => {}
            "warning" => warning = true,
            "critical" => critical = true,
            _ => return "",
        }
    }
    if maintenance {
        "maintenance"
    } else if critical {
        "critical"
    } else if warning {
        "warning"
    } else {
        "passing"
    }
}

fn health_services(entries: Vec<HealthEntry>, filters: &[String], sort: bool) -> Value {
    let mut out: Vec<(String, String, Value)> = Vec::new();
    for e in entries {
        let checks = e.checks.unwrap_or_default();
        let status = aggregated_status(
            checks
                .iter()
                .map(|c| (c.check_id.as_str(), c.status.as_str())),
        );
        if !filters.iter().any(|f| f == "any" || f == status) {
            continue;
        }
        let s = e.service;
        let n = e.node;
        let address = if s.address.is_empty() {
            n.address.clone()
        } else {
            s.address.clone()
        };
        let weights = s.weights.unwrap_or(WeightsJson {
            passing: 1,
            warning: 1,
        });
        let tagged: BTreeMap<String, Value> = s
            .tagged_addresses
            .unwrap_or_default()
            .into_iter()
            .map(|(k, a)| {
                let v = Value::record(
                    "api.ServiceAddress",
                    vec![
                        ("Address", Value::from(a.address)),
                        ("Port", Value::Int(a.port)),
                    ],
                );
                (k, v)
            })
            .collect();
        let tagged = Value::Map(std::sync::Arc::new(super::engine::Map {
            entries: tagged,
            zero: Value::record(
                "api.ServiceAddress",
                vec![("Address", Value::str("")), ("Port", Value::Int(0))],
            ),
            type_name: "map[string]api.ServiceAddress",
        }));
        let key = (n.node.clone(), s.id.clone());
        let value = Value::record(
            "*dep.HealthService",
            vec![
                ("Node", Value::from(n.node)),
                ("NodeID", Value::from(n.id)),
                ("NodeAddress", Value::from(n.address)),
                ("NodeTaggedAddresses", string_map(n.tagged_addresses)),
                ("NodeMeta", string_map(n.meta)),
                ("ServiceMeta", string_map(s.meta)),
                ("Address", Value::from(address)),
                ("ServiceTaggedAddresses", tagged),
                ("ID", Value::from(s.id)),
                ("Name", Value::from(s.service)),
                ("Tags", sorted_tags(s.tags)),
                (
                    "Checks",
                    Value::list(checks.into_iter().map(CheckJson::into_value).collect()),
                ),
                ("Status", Value::string(status)),
                ("Port", Value::Int(s.port)),
                (
                    "Weights",
                    Value::record(
                        "api.AgentWeights",
                        vec![
                            ("Passing", Value::Int(weights.passing)),
                            ("Warning", Value::Int(weights.warning)),
                        ],
                    ),
                ),
            ],
        );
        out.push((key.0, key.1, value));
    }
    // By node, then service ID, unless sorted by distance (`~near`).
    if sort {
        out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    }
    Value::list(out.into_iter().map(|(_, _, v)| v).collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CatalogNodeJson {
    node: NodeJson,
    #[serde(default)]
    services: Option<HashMap<String, ServiceJson>>,
}

fn catalog_node(node: Option<CatalogNodeJson>) -> Value {
    let Some(node) = node else {
        // consul-template hands out an empty CatalogNode for a missing node.
        return Value::record(
            "*dep.CatalogNode",
            vec![("Node", Value::Nil), ("Services", Value::list(Vec::new()))],
        );
    };
    let mut services: Vec<ServiceJson> = node.services.unwrap_or_default().into_values().collect();
    services.sort_by(|a, b| (&a.service, &a.id).cmp(&(&b.service, &b.id)));
    let services = services
        .into_iter()
        .map(|s| {
            Value::record(
                "*dep.CatalogNodeService",
                vec![
                    ("ID", Value::from(s.id)),
                    ("Service", Value::from(s.service)),
                    ("Tags", sorted_tags(s.tags)),
                    ("Meta", string_map(s.meta)),
                    ("Port", Value::Int(s.port)),
                    ("Address", Value::from(s.address)),
                    ("EnableTagOverride", Value::Bool(s.enable_tag_override)),
                ],
            )
        })
        .collect();
    Value::record(
        "*dep.CatalogNode",
        vec![
            ("Node", node.node.into_value()),
            ("Services", Value::list(services)),
        ],
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct KvJson {
    key: String,
    value: Option<String>,
    flags: u64,
    create_index: i64,
    modify_index: i64,
    lock_index: i64,
    session: String,
}

impl KvJson {
    /// The value's bytes exactly as stored (they need not be UTF-8).
    fn bytes(&self) -> Result<Vec<u8>, DecodeError> {
        match &self.value {
            None => Ok(Vec::new()),
            Some(b64) => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| DecodeError::Base64(e.to_string())),
        }
    }

    /// consul-template's KeyPair: `Key` is relative to the prefix.
    fn into_pair(self, prefix: &str) -> Result<Value, DecodeError> {
        let value = self.bytes()?;
        let key = self
            .key
            .strip_prefix(prefix)
            .unwrap_or(&self.key)
            .trim_start_matches('/');
        Ok(Value::record(
            "*dep.KeyPair",
            vec![
                ("Path", Value::string(&self.key)),
                ("Key", Value::string(key)),
                ("Value", Value::from(value)),
                ("CreateIndex", Value::Int(self.create_index)),
                ("ModifyIndex", Value::Int(self.modify_index)),
                ("LockIndex", Value::Int(self.lock_index)),
                ("Flags", Value::Int(self.flags as i64)),
                ("Session", Value::from(self.session)),
            ],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(s: &str) -> Dependency {
        Dependency::health_service(s).unwrap()
    }

    #[test]
    fn service_grammar() {
        assert_eq!(svc("web").to_string(), "health.service(web|passing)");
        assert_eq!(svc("web"), svc("web|passing"));
        assert_eq!(
            svc("v1.web@dc2~agent|critical,passing").to_string(),
            "health.service(v1.web@dc2~agent|critical,passing)"
        );
        let Dependency::HealthService {
            name, tag, scope, ..
        } = svc("a.b.web@dc1")
        else {
            panic!()
        };
        // The name has no dots: everything before the last dot is the tag.
        assert_eq!(
            (name.as_str(), tag.as_deref(), scope.dc.as_deref()),
            ("web", Some("a.b"), Some("dc1"))
        );
        assert_eq!(
            Dependency::health_service("web|bogus")
                .unwrap_err()
                .to_string(),
            r#"health.service: invalid filter: "bogus" in "web|bogus""#
        );
        assert_eq!(
            Dependency::health_service("we b").unwrap_err().to_string(),
            r#"health.service: invalid format: "we b""#
        );
        assert!(Dependency::health_service("web?ns=x").is_ok());
        assert!(Dependency::health_service("web?bogus=x")
            .unwrap_err()
            .to_string()
            .contains("invalid query parameter key \"bogus\""));
    }

    #[test]
    fn requests() {
        let (path, params) = svc("v1.web@dc2").request(None);
        assert_eq!(path, "/v1/health/service/web");
        assert_eq!(
            params,
            [
                ("dc".into(), "dc2".into()),
                ("tag".into(), "v1".into()),
                ("passing".into(), "1".into())
            ]
        );
        // Any other status filter is applied here, not by the server.
        let (_, params) = svc("web|any").request(None);
        assert!(params.is_empty());
        let (path, params) = Dependency::kv_list("/app/config").unwrap().request(None);
        assert_eq!(
            (path.as_str(), params[0].0.as_str()),
            ("/v1/kv/app/config", "recurse")
        );
        let (path, _) = Dependency::catalog_node("").unwrap().request(Some("node1"));
        assert_eq!(path, "/v1/catalog/node/node1");
        let (path, _) = Dependency::kv_get("a b").unwrap().request(None);
        assert_eq!(path, "/v1/kv/a%20b");
    }

    #[test]
    fn aggregated_status_order() {
        assert_eq!(aggregated_status([]), "passing");
        assert_eq!(
            aggregated_status([("a", "passing"), ("b", "warning")]),
            "warning"
        );
        assert_eq!(
            aggregated_status([("a", "critical"), ("b", "warning")]),
            "critical"
        );
        assert_eq!(
            aggregated_status([("_node_maintenance", "critical"), ("b", "passing")]),
            "maintenance"
        );
        assert_eq!(
            aggregated_status([("_service_maintenance:web", "critical")]),
            "maintenance"
        );
        assert_eq!(aggregated_status([("a", "bogus")]), "");
    }

    const HEALTH: &str = r#"[
      {"Node":{"ID":"id-b","Node":"b","Address":"10.0.0.2","Datacenter":"dc1","TaggedAddresses":null,"Meta":{"rack":"r2"}},
       "Service":{"ID":"web2","Service":"web","Tags":["z","a"],"Address":"","Meta":null,"Port":8080,"Weights":{"Passing":1,"Warning":1}},
       "Checks":[{"Node":"b","CheckID":"serfHealth","Status":"passing"},{"Node":"b","CheckID":"service:web2","Status":"warning"}]},
      {"Node":{"ID":"id-a","Node":"a","Address":"10.0.0.1","Datacenter":"dc1"},
       "Service":{"ID":"web1","Service":"web","Tags":null,"Address":"192.168.0.1","Meta":{"v":"1"},"Port":80},
       "Checks":[{"Node":"a","CheckID":"serfHealth","Status":"passing"}]}
    ]"#;

    fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
        match v {
            Value::Struct(s) => s.field(name).unwrap_or_else(|| panic!("no field {name}")),
            other => panic!("not a struct: {other:?}"),
        }
    }

    #[test]
    fn health_service_results_sorted_and_filtered() {
        let all = svc("web|any").decode(200, HEALTH.as_bytes()).unwrap();
        let Value::List(items) = &all else { panic!() };
        assert_eq!(items.len(), 2);
        // Sorted by node: "a" first; service address wins over the node's.
        assert_eq!(field(&items[0], "Address"), &Value::string("192.168.0.1"));
        assert_eq!(field(&items[1], "Address"), &Value::string("10.0.0.2"));
        assert_eq!(
            field(&items[1], "Tags"),
            &Value::list(vec![Value::string("a"), Value::string("z")])
        );
        assert_eq!(field(&items[1], "Status"), &Value::string("warning"));
        let Value::List(warning) = svc("web|warning").decode(200, HEALTH.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(warning.len(), 1);
        let Value::List(passing) = svc("web").decode(200, HEALTH.as_bytes()).unwrap() else {
            panic!()
        };
        assert_eq!(
            passing.len(),
            1,
            "the server filters, but so does the client"
        );
    }

    #[test]
    fn kv_values_keep_their_bytes() {
        let d = Dependency::kv_get("k").unwrap();
        let body = br#"[{"Key":"k","Value":"/wD+","Flags":0}]"#;
        assert_eq!(
            d.decode(200, body).unwrap(),
            Value::from(vec![0xff, 0x00, 0xfe])
        );
        assert_eq!(d.decode(404, b"").unwrap(), Value::Nil);
        assert!(matches!(
            d.decode(200, br#"[{"Key":"k","Value":"!!"}]"#),
            Err(DecodeError::Base64(_))
        ));
        let list = Dependency::kv_list("app/").unwrap();
        let body = br#"[{"Key":"app/a","Value":"MQ=="},{"Key":"app/sub/b","Value":null}]"#;
        let Value::List(pairs) = list.decode(200, body).unwrap() else {
            panic!()
        };
        assert_eq!(field(&pairs[0], "Key"), &Value::string("a"));
        assert_eq!(field(&pairs[0], "Path"), &Value::string("app/a"));
        assert_eq!(field(&pairs[0], "Value"), &Value::string("1"));
        assert_eq!(field(&pairs[1], "Key"), &Value::string("sub/b"));
        assert_eq!(list.decode(404, b"").unwrap(), Value::list(vec![]));
    }
}
