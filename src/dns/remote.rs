//! Names in another datacenter: `<svc>.service.<dc>.<domain>`,
//! `<node>.node.<dc>.<domain>` and `<query>.query.<dc>.<domain>`. The rows
//! are asked of a server there through the same forwarding as `?dc=` HTTP
//! requests (`crate::federation`: `/v1/health/service/<svc>`,
//! `/v1/catalog/node/<node>` and `/v1/query/<query>/execute`, the
//! datacenter's own query, made with the agent's DNS token, so the
//! remote datacenter applies its ACLs), and the answer is built from them
//! here exactly as a local one: this agent's TTLs, `only_passing`, health
//! filtering, shuffling, truncation and tag matching, with the remote
//! datacenter in the names it produces.
//!
//! No path to the datacenter (unknown, or no alive server) is NXDOMAIN,
//! as Consul's; a datacenter whose servers do not answer is SERVFAIL, so
//! resolvers retry rather than cache a negative answer.

use super::answer::{self, Answer, Question};
use super::index::Index;
use super::name::{self, Lookup, Zone};
use super::Settings;
use crate::acl::Authorizer;
use crate::catalog::types::{
    Check, CheckDefinition, HealthStatus, Node, Service, ServiceAddress, Weights,
};
use crate::consensus::api::AclCall;
use crate::federation::{Federation, ForwardError};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a remote datacenter may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Answers for other datacenters.
pub struct Remote {
    pub federation: Arc<Federation>,
    /// The DNS token's secret, if ACLs are on.
    pub token: Arc<dyn Fn() -> Option<String> + Send + Sync>,
}

impl Remote {
    /// The answer to `q`, a name in datacenter `dc` (not this one).
    pub async fn answer(
        &self,
        settings: &Settings,
        q: &Question<'_>,
        dc: &str,
        max_answers: usize,
    ) -> Answer {
        let Zone::Catalog { domain, labels } = name::zone(&q.labels, &settings.domain_labels)
        else {
            return Answer::refused();
        };
        let (path, query) = match name::parse(labels, q.qtype == RecordType::SRV) {
            Lookup::Service { service, .. } => (
                format!("/v1/health/service/{}", encode(service)),
                format!("dc={}", encode(dc)),
            ),
            Lookup::Node { node, .. } => (
                format!("/v1/catalog/node/{}", encode(&node)),
                format!("dc={}", encode(dc)),
            ),
            Lookup::Query { name, .. } => (
                format!("/v1/query/{}/execute", encode(&name)),
                format!("dc={}", encode(dc)),
            ),
            _ => return Answer::nxdomain(settings, domain),
        };
        let call = AclCall {
            method: "GET".into(),
            path,
            query: Some(query),
            token: (self.token)(),
            body: Vec::new(),
        };
        let reply = match self.federation.forward(dc, call, 0, TIMEOUT).await {
            Ok(r) => r,
            Err(ForwardError::NoPath) => return Answer::nxdomain(settings, domain),
            Err(ForwardError::Failed(why)) => {
                tracing::debug!(datacenter = dc, "dns: remote lookup failed: {why}");
                return Answer::error(ResponseCode::ServFail);
            }
        };
        if reply.status != 200 {
            tracing::debug!(
                datacenter = dc,
                status = reply.status,
                "dns: remote lookup refused: {}",
                String::from_utf8_lossy(&reply.body)
            );
            return match reply.status {
                403 | 404 => Answer::nxdomain(settings, domain),
                _ => Answer::error(ResponseCode::ServFail),
            };
        }
        let Ok(body) = serde_json::from_slice::<Value>(&reply.body) else {
            return Answer::error(ResponseCode::ServFail);
        };
        let mut there = settings.clone();
        there.datacenter = dc.to_string();
        there.datacenter_lower = dc.to_lowercase();
        if body["Nodes"].is_array() {
            // A prepared query, executed there; the instances keep the
            // order it left them in.
            let (nodes, services, checks) = rows(&body["Nodes"]);
            let rows = super::prepared::Rows {
                service: body["Service"].as_str().unwrap_or_default(),
                ttl: body["DNS"]["TTL"].as_str().unwrap_or_default(),
                nodes,
                services,
                checks,
            };
            return super::prepared::rows_answer(&there, q, domain, rows, max_answers);
        }
        let (nodes, services, checks) = rows(&body);
        let index = Index::build(&there, 0, nodes, services, checks);
        // The remote datacenter filtered the rows with the DNS token.
        answer::answer(&there, &index, q, max_answers, &Authorizer::allow_all())
    }
}

/// What a question needs from other datacenters.
pub enum Pending {
    /// A name in this datacenter.
    Datacenter(String),
    /// A prepared query to fail over.
    Failover(Box<crate::catalog::prepared_query::PreparedQuery>),
}

impl Remote {
    /// A prepared query with no instance here, run in the other
    /// datacenters its failover policy names; the first with instances
    /// answers, with its datacenter in the names produced.
    pub async fn failover(
        &self,
        settings: &Settings,
        q: &Question<'_>,
        query: &crate::catalog::prepared_query::PreparedQuery,
        max_answers: usize,
    ) -> Answer {
        let Zone::Catalog { domain, .. } = name::zone(&q.labels, &settings.domain_labels) else {
            return Answer::refused();
        };
        let Some(body) =
            crate::federation::failover(&self.federation, query, 0, (self.token)(), 0).await
        else {
            return Answer::nxdomain(settings, domain);
        };
        let dc = body["Datacenter"].as_str().unwrap_or_default();
        let mut there = settings.clone();
        there.datacenter = dc.to_string();
        there.datacenter_lower = dc.to_lowercase();
        let (nodes, services, checks) = rows(&body["Nodes"]);
        let rows = super::prepared::Rows {
            service: body["Service"].as_str().unwrap_or_default(),
            ttl: body["DNS"]["TTL"].as_str().unwrap_or_default(),
            nodes,
            services,
            checks,
        };
        super::prepared::rows_answer(&there, q, domain, rows, max_answers)
    }
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The catalog rows in a `/v1/health/service` list (`[{Node, Service,
/// Checks}]`) or a `/v1/catalog/node` answer (`{Node, Services}`).
fn rows(body: &Value) -> (Vec<Node>, Vec<Service>, Vec<Check>) {
    let (mut nodes, mut services, mut checks) = (Vec::new(), Vec::new(), Vec::new());
    match body {
        Value::Array(entries) => {
            let mut seen = std::collections::HashSet::new();
            for e in entries {
                let node = node(&e["Node"]);
                services.push(service(&node.name, &e["Service"]));
                for c in e["Checks"].as_array().into_iter().flatten() {
                    checks.push(check(c));
                }
                if seen.insert(node.name.clone()) {
                    nodes.push(node);
                }
            }
        }
        Value::Object(_) if body["Node"].is_object() => {
            let node = node(&body["Node"]);
            if let Some(map) = body["Services"].as_object() {
                for s in map.values() {
                    services.push(service(&node.name, s));
                }
            }
            nodes.push(node);
        }
        _ => {}
    }
    (nodes, services, checks)
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn strings(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), text(v))).collect())
        .unwrap_or_default()
}

fn list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default()
}

fn number(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn node(v: &Value) -> Node {
    Node {
        id: text(&v["ID"]),
        name: text(&v["Node"]),
        address: text(&v["Address"]),
        datacenter: text(&v["Datacenter"]),
        tagged_addresses: strings(&v["TaggedAddresses"]),
        meta: strings(&v["Meta"]),
        create_index: number(&v["CreateIndex"]),
        modify_index: number(&v["ModifyIndex"]),
    }
}

fn service(node: &str, v: &Value) -> Service {
    let tagged = v["TaggedAddresses"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, a)| {
                    (
                        k.clone(),
                        ServiceAddress {
                            address: text(&a["Address"]),
                            port: number(&a["Port"]).min(u16::MAX as u64) as u16,
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let weights = Weights {
        passing: number(&v["Weights"]["Passing"]).max(1) as u32,
        warning: number(&v["Weights"]["Warning"]) as u32,
    };
    Service {
        node: node.to_string(),
        id: text(&v["ID"]),
        name: text(&v["Service"]),
        tags: list(&v["Tags"]),
        address: text(&v["Address"]),
        tagged_addresses: tagged,
        meta: strings(&v["Meta"]),
        port: number(&v["Port"]).min(u16::MAX as u64) as u16,
        weights,
        enable_tag_override: v["EnableTagOverride"].as_bool().unwrap_or(false),
        kind: text(&v["Kind"]),
        create_index: number(&v["CreateIndex"]),
        modify_index: number(&v["ModifyIndex"]),
    }
}

fn check(v: &Value) -> Check {
    Check {
        node: text(&v["Node"]),
        check_id: text(&v["CheckID"]),
        name: text(&v["Name"]),
        // A status this agent does not know counts as critical.
        status: HealthStatus::parse(v["Status"].as_str().unwrap_or_default())
            .unwrap_or(HealthStatus::Critical),
        notes: String::new(),
        output: String::new(),
        service_id: text(&v["ServiceID"]),
        service_name: text(&v["ServiceName"]),
        service_tags: list(&v["ServiceTags"]),
        definition: CheckDefinition::undefined(v["Type"].as_str().unwrap_or_default()),
        create_index: number(&v["CreateIndex"]),
        modify_index: number(&v["ModifyIndex"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn health_entries_become_rows() {
        let body = json!([{
            "Node": {"ID": "x", "Node": "n1", "Address": "10.0.0.1", "Datacenter": "dc2",
                     "TaggedAddresses": {"lan": "10.0.0.1"}, "Meta": {"k": "v"}},
            "Service": {"ID": "web-1", "Service": "web", "Tags": ["a"], "Port": 80,
                        "Weights": {"Passing": 3, "Warning": 1},
                        "TaggedAddresses": {"lan_ipv4": {"Address": "10.0.0.2", "Port": 81}}},
            "Checks": [{"Node": "n1", "CheckID": "serfHealth", "Status": "passing"},
                       {"Node": "n1", "CheckID": "c", "ServiceID": "web-1", "Status": "bogus"}]
        }]);
        let (nodes, services, checks) = rows(&body);
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].meta["k"], "v");
        assert_eq!(services[0].node, "n1");
        assert_eq!(services[0].weights.passing, 3);
        assert_eq!(services[0].tagged_addresses["lan_ipv4"].port, 81);
        assert_eq!(checks[0].status, HealthStatus::Passing);
        assert_eq!(checks[1].status, HealthStatus::Critical);
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn a_node_answer_becomes_rows() {
        let body = json!({"Node": {"Node": "n1", "Address": "10.0.0.1"},
                          "Services": {"web": {"ID": "web", "Service": "web", "Port": 80}}});
        let (nodes, services, checks) = rows(&body);
        assert_eq!((nodes.len(), services.len(), checks.len()), (1, 1, 0));
        assert!(rows(&json!(null)).0.is_empty());
    }
}
