//! Consul's JSON response shapes (PascalCase, `ID`/`CheckID`/...), built
//! from the catalog's domain types. Lists and tags render `[]`, never `null`.

use crate::catalog::types::{
    Check, CheckDefinition, CheckKind, HealthStatus, KvEntry, Node, Service, ServiceAddress,
    ServiceInstance, Weights,
};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Consul's `ServiceAddress`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "PascalCase")]
pub struct AddressJson {
    pub address: String,
    pub port: u16,
}

pub fn tagged_json(m: &BTreeMap<String, ServiceAddress>) -> BTreeMap<String, AddressJson> {
    m.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                AddressJson {
                    address: v.address.clone(),
                    port: v.port,
                },
            )
        })
        .collect()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct WeightsJson {
    pub passing: i64,
    pub warning: i64,
}

impl From<Weights> for WeightsJson {
    fn from(w: Weights) -> Self {
        WeightsJson {
            passing: w.passing as i64,
            warning: w.warning as i64,
        }
    }
}

/// `structs.Node` as the catalog and health endpoints render it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeJson {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl From<&Node> for NodeJson {
    fn from(n: &Node) -> Self {
        NodeJson {
            id: n.id.clone(),
            node: n.name.clone(),
            address: n.address.clone(),
            datacenter: n.datacenter.clone(),
            tagged_addresses: n.tagged_addresses.clone(),
            meta: n.meta.clone(),
            create_index: n.create_index,
            modify_index: n.modify_index,
        }
    }
}

/// Consul's empty `ServiceProxy`/`Proxy` object for typical services.
#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ProxyJson {
    pub mode: String,
    pub mesh_gateway: BTreeMap<String, String>,
    pub expose: BTreeMap<String, String>,
}

/// `structs.NodeService`: a service in `/v1/catalog/node` and `/v1/health/service`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeServiceJson {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub service: String,
    pub tags: Vec<String>,
    pub address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tagged_addresses: BTreeMap<String, AddressJson>,
    pub meta: BTreeMap<String, String>,
    pub port: u16,
    pub weights: WeightsJson,
    pub enable_tag_override: bool,
    pub proxy: ProxyJson,
    pub connect: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl From<&Service> for NodeServiceJson {
    fn from(s: &Service) -> Self {
        NodeServiceJson {
            kind: s.kind.clone(),
            id: s.id.clone(),
            service: s.name.clone(),
            tags: s.tags.clone(),
            address: s.address.clone(),
            tagged_addresses: tagged_json(&s.tagged_addresses),
            meta: s.meta.clone(),
            port: s.port,
            weights: s.weights.into(),
            enable_tag_override: s.enable_tag_override,
            proxy: ProxyJson::default(),
            connect: BTreeMap::new(),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }
}

/// `structs.ServiceNode`: one row of `/v1/catalog/service/<name>`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceNodeJson {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub datacenter: String,
    pub tagged_addresses: BTreeMap<String, String>,
    pub node_meta: BTreeMap<String, String>,
    pub service_kind: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    pub service_address: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub service_tagged_addresses: BTreeMap<String, AddressJson>,
    pub service_weights: WeightsJson,
    pub service_meta: BTreeMap<String, String>,
    pub service_port: u16,
    pub service_enable_tag_override: bool,
    pub service_proxy: ProxyJson,
    pub service_connect: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl ServiceNodeJson {
    pub fn new(node: &Node, s: &Service) -> ServiceNodeJson {
        ServiceNodeJson {
            id: node.id.clone(),
            node: node.name.clone(),
            address: node.address.clone(),
            datacenter: node.datacenter.clone(),
            tagged_addresses: node.tagged_addresses.clone(),
            node_meta: node.meta.clone(),
            service_kind: s.kind.clone(),
            service_id: s.id.clone(),
            service_name: s.name.clone(),
            service_tags: s.tags.clone(),
            service_address: s.address.clone(),
            service_tagged_addresses: tagged_json(&s.tagged_addresses),
            service_weights: s.weights.into(),
            service_meta: s.meta.clone(),
            service_port: s.port,
            service_enable_tag_override: s.enable_tag_override,
            service_proxy: ProxyJson::default(),
            service_connect: BTreeMap::new(),
            create_index: s.create_index,
            modify_index: s.modify_index,
        }
    }

    /// The instance as Consul's state store holds it: the node's fields
    /// (ID, address, datacenter, tagged addresses, meta) are filled in
    /// only when it is read with its node, so they are empty here.
    pub fn stored(s: &Service) -> ServiceNodeJson {
        let node = Node {
            name: s.node.clone(),
            ..Node::default()
        };
        ServiceNodeJson::new(&node, s)
    }
}

fn dur(d: Duration) -> String {
    if d.is_zero() {
        String::new()
    } else {
        crate::duration::format(d)
    }
}

/// `HealthCheckDefinition`: only what was set.
#[derive(Debug, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct CheckDefinitionJson {
    #[serde(rename = "HTTP", skip_serializing_if = "String::is_empty")]
    pub http: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub method: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub body: String,
    #[serde(rename = "TLSServerName", skip_serializing_if = "String::is_empty")]
    pub tls_server_name: String,
    #[serde(rename = "TLSSkipVerify", skip_serializing_if = "std::ops::Not::not")]
    pub tls_skip_verify: bool,
    #[serde(rename = "TCP", skip_serializing_if = "String::is_empty")]
    pub tcp: String,
    #[serde(rename = "UDP", skip_serializing_if = "String::is_empty")]
    pub udp: String,
    #[serde(rename = "GRPC", skip_serializing_if = "String::is_empty")]
    pub grpc: String,
    #[serde(rename = "GRPCUseTLS", skip_serializing_if = "std::ops::Not::not")]
    pub grpc_use_tls: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alias_node: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alias_service: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub script_args: Vec<String>,
    #[serde(rename = "DockerContainerID", skip_serializing_if = "String::is_empty")]
    pub docker_container_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub interval: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub timeout: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub deregister_critical_service_after: String,
}

/// `structs.HealthCheck`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthCheckJson {
    pub node: String,
    #[serde(rename = "CheckID")]
    pub check_id: String,
    pub name: String,
    pub status: &'static str,
    pub notes: String,
    pub output: String,
    #[serde(rename = "ServiceID")]
    pub service_id: String,
    pub service_name: String,
    pub service_tags: Vec<String>,
    #[serde(rename = "Type")]
    pub kind: String,
    pub interval: String,
    pub timeout: String,
    pub exposed_port: u16,
    pub definition: CheckDefinitionJson,
    pub create_index: u64,
    pub modify_index: u64,
}

impl From<&CheckDefinition> for CheckDefinitionJson {
    fn from(d: &CheckDefinition) -> Self {
        let mut out = CheckDefinitionJson {
            interval: dur(d.interval),
            timeout: dur(d.timeout),
            deregister_critical_service_after: dur(d.deregister_critical_service_after),
            ..CheckDefinitionJson::default()
        };
        match &d.kind {
            CheckKind::Http(h) => {
                out.http = h.url.clone();
                out.header = h.header.clone();
                out.method = h.method.clone();
                out.body = h.body.clone();
                out.tls_server_name = h.tls_server_name.clone();
                out.tls_skip_verify = h.tls_skip_verify;
            }
            CheckKind::Tcp {
                address,
                tls_server_name,
                tls_skip_verify,
                ..
            } => {
                out.tcp = address.clone();
                out.tls_server_name = tls_server_name.clone();
                out.tls_skip_verify = *tls_skip_verify;
            }
            CheckKind::Udp { address } => out.udp = address.clone(),
            CheckKind::Grpc {
                target,
                use_tls,
                tls_server_name,
                tls_skip_verify,
            } => {
                out.grpc = target.clone();
                out.grpc_use_tls = *use_tls;
                out.tls_server_name = tls_server_name.clone();
                out.tls_skip_verify = *tls_skip_verify;
            }
            CheckKind::H2ping {
                tls_server_name,
                tls_skip_verify,
                ..
            } => {
                out.tls_server_name = tls_server_name.clone();
                out.tls_skip_verify = *tls_skip_verify;
            }
            CheckKind::Script { args } => out.script_args = args.clone(),
            CheckKind::Docker {
                container_id, args, ..
            } => {
                out.docker_container_id = container_id.clone();
                out.script_args = args.clone();
            }
            CheckKind::Alias { node, service } => {
                out.alias_node = node.clone();
                out.alias_service = service.clone();
            }
            CheckKind::Ttl { .. } | CheckKind::OsService { .. } | CheckKind::Undefined { .. } => {}
        }
        out
    }
}

impl From<&Check> for HealthCheckJson {
    fn from(c: &Check) -> Self {
        let d = &c.definition;
        HealthCheckJson {
            node: c.node.clone(),
            check_id: c.check_id.clone(),
            name: c.name.clone(),
            status: c.status.as_str(),
            notes: c.notes.clone(),
            output: c.output.clone(),
            service_id: c.service_id.clone(),
            service_name: c.service_name.clone(),
            service_tags: c.service_tags.clone(),
            kind: d.kind.type_name().to_string(),
            interval: dur(d.interval),
            timeout: dur(d.timeout),
            exposed_port: 0,
            definition: d.into(),
            create_index: c.create_index,
            modify_index: c.modify_index,
        }
    }
}

/// One entry of `/v1/health/service/<name>`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ServiceEntryJson {
    pub node: NodeJson,
    pub service: NodeServiceJson,
    pub checks: Vec<HealthCheckJson>,
}

impl From<&ServiceInstance> for ServiceEntryJson {
    fn from(i: &ServiceInstance) -> Self {
        ServiceEntryJson {
            node: (&i.node).into(),
            service: (&i.service).into(),
            checks: i.checks.iter().map(HealthCheckJson::from).collect(),
        }
    }
}

/// `DirEntry` of the KV API; `Value` is base64, `null` when empty.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DirEntryJson {
    pub lock_index: u64,
    pub key: String,
    pub flags: u64,
    pub value: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl DirEntryJson {
    pub fn new(e: &KvEntry, with_value: bool) -> DirEntryJson {
        let value = (with_value && !e.value.is_empty())
            .then(|| base64::engine::general_purpose::STANDARD.encode(&e.value));
        DirEntryJson {
            lock_index: e.lock_index,
            key: e.key.clone(),
            flags: e.flags,
            value,
            session: e.session.clone(),
            create_index: e.create_index,
            modify_index: e.modify_index,
        }
    }
}

/// Parses a check status as Consul's HTTP API accepts it.
pub fn parse_status(s: &str) -> Option<HealthStatus> {
    HealthStatus::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::types::HttpCheck;

    fn definition_json(kind: CheckKind) -> String {
        let d = CheckDefinition {
            kind,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            deregister_critical_service_after: Duration::from_secs(90),
            output_max_size: 100,
            ..CheckDefinition::default()
        };
        serde_json::to_string(&CheckDefinitionJson::from(&d)).expect("serializes")
    }

    const TIMES: &str =
        r#""Interval":"10s","Timeout":"2s","DeregisterCriticalServiceAfter":"1m30s""#;

    #[test]
    fn definitions_render_their_kinds_fields() {
        let http = CheckKind::Http(HttpCheck {
            url: "https://web/health".into(),
            method: "POST".into(),
            header: [("X-A".to_string(), vec!["1".to_string()])].into(),
            body: "{}".into(),
            disable_redirects: true,
            tls_server_name: "web.internal".into(),
            tls_skip_verify: true,
        });
        assert_eq!(
            definition_json(http),
            format!(
                r#"{{"HTTP":"https://web/health","Header":{{"X-A":["1"]}},"Method":"POST","Body":"{{}}","TLSServerName":"web.internal","TLSSkipVerify":true,{TIMES}}}"#
            )
        );
        let grpc = CheckKind::Grpc {
            target: "rpc:1".into(),
            use_tls: true,
            tls_server_name: String::new(),
            tls_skip_verify: true,
        };
        assert_eq!(
            definition_json(grpc),
            format!(r#"{{"TLSSkipVerify":true,"GRPC":"rpc:1","GRPCUseTLS":true,{TIMES}}}"#)
        );
        let tcp = CheckKind::Tcp {
            address: "db:1".into(),
            use_tls: true,
            tls_server_name: String::new(),
            tls_skip_verify: false,
        };
        assert_eq!(definition_json(tcp), format!(r#"{{"TCP":"db:1",{TIMES}}}"#));
        let docker = CheckKind::Docker {
            container_id: "f00".into(),
            shell: "/bin/sh".into(),
            args: vec!["ok".into()],
        };
        assert_eq!(
            definition_json(docker),
            format!(r#"{{"ScriptArgs":["ok"],"DockerContainerID":"f00",{TIMES}}}"#)
        );
        let alias = CheckKind::Alias {
            node: "n2".into(),
            service: "web".into(),
        };
        assert_eq!(
            definition_json(alias),
            format!(r#"{{"AliasNode":"n2","AliasService":"web",{TIMES}}}"#)
        );
        let ttl = CheckKind::Ttl {
            ttl: Duration::from_secs(30),
        };
        assert_eq!(definition_json(ttl), format!("{{{TIMES}}}"));
    }

    #[test]
    fn the_type_comes_from_the_kind() {
        let c = Check {
            definition: CheckDefinition::undefined("maintenance"),
            ..Check::default()
        };
        let j = serde_json::to_value(HealthCheckJson::from(&c)).expect("serializes");
        assert_eq!(j["Type"], "maintenance");
        assert_eq!(j["Definition"], serde_json::json!({}));
        assert_eq!(j["Interval"], "");
        let c = Check {
            definition: CheckDefinition {
                kind: CheckKind::Udp {
                    address: "dns:53".into(),
                },
                interval: Duration::from_secs(5),
                ..CheckDefinition::default()
            },
            ..Check::default()
        };
        let j = serde_json::to_value(HealthCheckJson::from(&c)).expect("serializes");
        assert_eq!(j["Type"], "udp");
        assert_eq!(j["Interval"], "5s");
        assert_eq!(
            j["Definition"],
            serde_json::json!({"UDP": "dns:53", "Interval": "5s"})
        );
    }
}
