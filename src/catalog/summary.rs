//! Whole-catalog summaries for the web UI, as Consul's internal UI
//! endpoints compute them (`agent/ui_endpoint.go` `summarizeServices`,
//! `agent/consul/catalog_overview.go`): one row per service name with its
//! health counts, every node with what runs on it, and the datacenter's
//! totals. Each is one pass over a [`CatalogDump`] with hash lookups, never
//! a query per service or node, so a 5,000-service catalog costs what
//! reading it costs.

use super::types::{Check, HealthStatus, Node, Service};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The node, service and check tables, each read once in one transaction.
#[derive(Debug, Default)]
pub struct CatalogDump {
    pub nodes: Vec<Node>,
    pub services: Vec<Service>,
    pub checks: Vec<Check>,
}

/// Checks by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthCounts {
    pub passing: usize,
    pub warning: usize,
    pub critical: usize,
}

impl HealthCounts {
    fn add(&mut self, status: HealthStatus) {
        match status {
            HealthStatus::Passing => self.passing += 1,
            HealthStatus::Warning => self.warning += 1,
            HealthStatus::Critical => self.critical += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.passing + self.warning + self.critical
    }
}

/// One row of `/v1/internal/ui/services`: every instance of a name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceSummary {
    pub name: String,
    /// The last instance's kind, as Consul reports it (`""` typical).
    pub kind: String,
    pub datacenter: String,
    /// Distinct, sorted.
    pub tags: Vec<String>,
    /// Distinct, sorted.
    pub nodes: Vec<String>,
    /// Distinct `Meta["external-source"]` values in the order first seen.
    pub external_sources: Vec<String>,
    pub instance_count: usize,
    /// Each (node, CheckID) once: an instance's own checks, and its node's
    /// checks once per node hosting it.
    pub checks: HealthCounts,
}

/// What a summary is built from while the dump is walked.
#[derive(Default)]
struct ServiceAcc<'a> {
    kind: &'a str,
    datacenter: &'a str,
    tags: BTreeSet<&'a str>,
    nodes: BTreeSet<&'a str>,
    external_sources: Vec<&'a str>,
    instance_count: usize,
    checks: HashMap<(&'a str, &'a str), HealthStatus>,
}

/// Consul's `structs.MetaExternalSource`.
const EXTERNAL_SOURCE: &str = "external-source";

/// Checks grouped by what they belong to.
struct ChecksByOwner<'a> {
    node: HashMap<&'a str, Vec<&'a Check>>,
    instance: HashMap<(&'a str, &'a str), Vec<&'a Check>>,
}

impl<'a> ChecksByOwner<'a> {
    fn new(checks: &'a [Check]) -> Self {
        let mut by = ChecksByOwner {
            node: HashMap::new(),
            instance: HashMap::new(),
        };
        for c in checks {
            if c.service_id.is_empty() {
                by.node.entry(c.node.as_str()).or_default().push(c);
            } else {
                by.instance
                    .entry((c.node.as_str(), c.service_id.as_str()))
                    .or_default()
                    .push(c);
            }
        }
        by
    }

    fn of_node(&self, node: &str) -> &[&'a Check] {
        self.node.get(node).map(Vec::as_slice).unwrap_or_default()
    }

    fn of_instance(&self, node: &'a str, service_id: &'a str) -> &[&'a Check] {
        self.instance
            .get(&(node, service_id))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
}

/// `/v1/internal/ui/services`, sorted by name. Instances on a node missing
/// from the dump are left out, as a health query leaves them out.
pub fn service_summaries(dump: &CatalogDump) -> Vec<ServiceSummary> {
    let nodes: HashMap<&str, &Node> = dump.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let checks = ChecksByOwner::new(&dump.checks);
    let mut by_name: BTreeMap<&str, ServiceAcc> = BTreeMap::new();
    for svc in &dump.services {
        let Some(node) = nodes.get(svc.node.as_str()) else {
            continue;
        };
        let acc = by_name.entry(svc.name.as_str()).or_default();
        acc.kind = &svc.kind;
        acc.datacenter = &node.datacenter;
        acc.instance_count += 1;
        acc.nodes.insert(&node.name);
        acc.tags.extend(svc.tags.iter().map(String::as_str));
        if let Some(source) = svc.meta.get(EXTERNAL_SOURCE).filter(|s| !s.is_empty()) {
            if !acc.external_sources.contains(&source.as_str()) {
                acc.external_sources.push(source);
            }
        }
        let own = checks.of_instance(&svc.node, &svc.id);
        for c in checks.of_node(&svc.node).iter().chain(own) {
            acc.checks
                .insert((c.node.as_str(), c.check_id.as_str()), c.status);
        }
    }
    by_name
        .into_iter()
        .map(|(name, acc)| {
            let mut counts = HealthCounts::default();
            for status in acc.checks.values() {
                counts.add(*status);
            }
            ServiceSummary {
                name: name.to_string(),
                kind: acc.kind.to_string(),
                datacenter: acc.datacenter.to_string(),
                tags: acc.tags.into_iter().map(str::to_string).collect(),
                nodes: acc.nodes.into_iter().map(str::to_string).collect(),
                external_sources: acc
                    .external_sources
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                instance_count: acc.instance_count,
                checks: counts,
            }
        })
        .collect()
}

/// One node with everything registered on it.
#[derive(Debug)]
pub struct NodeInfo<'a> {
    pub node: &'a Node,
    pub services: Vec<&'a Service>,
    /// Node checks and its instances' checks, by CheckID.
    pub checks: Vec<&'a Check>,
}

/// `/v1/internal/ui/nodes`: every node in name order.
pub fn node_infos(dump: &CatalogDump) -> Vec<NodeInfo<'_>> {
    let mut services: HashMap<&str, Vec<&Service>> = HashMap::new();
    for s in &dump.services {
        services.entry(s.node.as_str()).or_default().push(s);
    }
    let mut checks: HashMap<&str, Vec<&Check>> = HashMap::new();
    for c in &dump.checks {
        checks.entry(c.node.as_str()).or_default().push(c);
    }
    dump.nodes
        .iter()
        .map(|node| NodeInfo {
            node,
            services: services.remove(node.name.as_str()).unwrap_or_default(),
            checks: checks.remove(node.name.as_str()).unwrap_or_default(),
        })
        .collect()
}

/// A named group's totals in the overview.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthSummary {
    /// Empty for the nodes' group.
    pub name: String,
    pub counts: HealthCounts,
}

/// `/v1/internal/ui/catalog-overview`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CatalogOverview {
    /// One group for all nodes (Consul has one per partition), each node
    /// counted by its worst node check.
    pub nodes: Vec<HealthSummary>,
    /// Per service name, each instance counted by its worst own check.
    pub services: Vec<HealthSummary>,
    /// Per check name, each check counted by its status.
    pub checks: Vec<HealthSummary>,
}

/// Consul's catalog overview, by name order within each list.
pub fn overview(dump: &CatalogDump) -> CatalogOverview {
    let mut check_groups: BTreeMap<&str, HealthCounts> = BTreeMap::new();
    let mut node_worst: HashMap<&str, HealthStatus> = HashMap::new();
    let mut instance_worst: HashMap<(&str, &str), HealthStatus> = HashMap::new();
    for c in &dump.checks {
        check_groups.entry(&c.name).or_default().add(c.status);
        let worst = if c.service_id.is_empty() {
            node_worst.entry(&c.node).or_default()
        } else {
            instance_worst.entry((&c.node, &c.service_id)).or_default()
        };
        *worst = (*worst).max(c.status);
    }
    let mut service_groups: BTreeMap<&str, HealthCounts> = BTreeMap::new();
    for s in &dump.services {
        let status = instance_worst
            .get(&(s.node.as_str(), s.id.as_str()))
            .copied()
            .unwrap_or_default();
        service_groups.entry(&s.name).or_default().add(status);
    }
    let mut nodes = HealthCounts::default();
    for n in &dump.nodes {
        nodes.add(node_worst.get(n.name.as_str()).copied().unwrap_or_default());
    }
    let named = |groups: BTreeMap<&str, HealthCounts>| {
        groups
            .into_iter()
            .map(|(name, counts)| HealthSummary {
                name: name.to_string(),
                counts,
            })
            .collect()
    };
    CatalogOverview {
        nodes: if dump.nodes.is_empty() {
            Vec::new()
        } else {
            vec![HealthSummary {
                name: String::new(),
                counts: nodes,
            }]
        },
        services: named(service_groups),
        checks: named(check_groups),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Node {
        Node {
            name: name.into(),
            datacenter: "dc1".into(),
            ..Node::default()
        }
    }

    fn service(node: &str, id: &str, name: &str, tags: &[&str]) -> Service {
        Service {
            node: node.into(),
            id: id.into(),
            name: name.into(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Service::default()
        }
    }

    fn check(node: &str, id: &str, service_id: &str, status: HealthStatus) -> Check {
        Check {
            node: node.into(),
            check_id: id.into(),
            name: id.into(),
            status,
            service_id: service_id.into(),
            ..Check::default()
        }
    }

    /// Two nodes; `web` twice on n1 and once on n2; n1's node check is
    /// critical, n2's passing.
    fn dump() -> CatalogDump {
        use HealthStatus::*;
        let mut ext = service("n2", "web3", "web", &["b", "a"]);
        ext.meta.insert("external-source".into(), "k8s".into());
        CatalogDump {
            nodes: vec![node("n1"), node("n2"), node("n3")],
            services: vec![
                service("n1", "web1", "web", &["b"]),
                service("n1", "web2", "web", &["c", "b"]),
                ext,
                service("n2", "db", "db", &[]),
                service("gone", "x", "orphan", &[]),
            ],
            checks: vec![
                check("n1", "serfHealth", "", Critical),
                check("n1", "web1-http", "web1", Passing),
                check("n1", "web2-http", "web2", Warning),
                check("n2", "serfHealth", "", Passing),
                check("n2", "web3-http", "web3", Passing),
                check("n2", "db-tcp", "db", Critical),
            ],
        }
    }

    #[test]
    fn node_checks_count_once_per_hosting_node() {
        let rows = service_summaries(&dump());
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["db", "web"],
            "sorted; an instance without a node is left out"
        );
        let web = &rows[1];
        assert_eq!(web.instance_count, 3);
        assert_eq!(web.nodes, ["n1", "n2"]);
        assert_eq!(web.tags, ["a", "b", "c"]);
        assert_eq!(web.external_sources, ["k8s"]);
        // n1/serfHealth once though two instances share it, n2/serfHealth
        // once, and the three instance checks.
        assert_eq!(
            web.checks,
            HealthCounts {
                passing: 3,
                warning: 1,
                critical: 1
            }
        );
        let db = &rows[0];
        assert_eq!(db.instance_count, 1);
        assert!(db.tags.is_empty() && db.external_sources.is_empty());
        assert_eq!(
            db.checks,
            HealthCounts {
                passing: 1,
                warning: 0,
                critical: 1
            }
        );
        assert_eq!(db.datacenter, "dc1");
    }

    #[test]
    fn nodes_carry_their_services_and_checks() {
        let d = dump();
        let infos = node_infos(&d);
        assert_eq!(infos.len(), 3);
        assert_eq!(infos[0].services.len(), 2);
        assert_eq!(infos[0].checks.len(), 3);
        assert_eq!(infos[1].services.len(), 2);
        assert!(infos[2].services.is_empty() && infos[2].checks.is_empty());
    }

    #[test]
    fn overview_counts_nodes_instances_and_checks() {
        let o = overview(&dump());
        assert_eq!(o.nodes.len(), 1);
        // n1 critical (serfHealth), n2 passing, n3 has no checks: passing.
        assert_eq!(
            o.nodes[0].counts,
            HealthCounts {
                passing: 2,
                warning: 0,
                critical: 1
            }
        );
        let web = o.services.iter().find(|s| s.name == "web").unwrap();
        // Instances by their own worst check; the node check does not count.
        assert_eq!(
            web.counts,
            HealthCounts {
                passing: 2,
                warning: 1,
                critical: 0
            }
        );
        let orphan = o.services.iter().find(|s| s.name == "orphan").unwrap();
        assert_eq!(orphan.counts.total(), 1);
        let serf = o.checks.iter().find(|c| c.name == "serfHealth").unwrap();
        assert_eq!(serf.counts.total(), 2);
        assert_eq!(serf.counts.critical, 1);
        assert_eq!(
            overview(&CatalogDump::default()),
            CatalogOverview::default()
        );
    }
}
