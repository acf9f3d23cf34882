//! The answer index: everything DNS answers from, derived from the catalog
//! in one pass and swapped in whole. A query never opens an LMDB
//! transaction; it looks a name up here and clones prebuilt record data.
//!
//! Health filtering happens at build time (Consul's
//! `CheckServiceNodes.Filter`): an instance with any critical check, its own
//! or its node's (`serfHealth` and maintenance included), is left out; with
//! `only_passing` so is one with a warning. A service whose instances are all
//! filtered out is indistinguishable from an unknown one, which is what
//! Consul answers too (NXDOMAIN).
//!
//! [`IndexCache`] rebuilds lazily: a query first compares the catalog's
//! change index with the one the index was built at, so a registration that
//! has been acknowledged is visible to the very next query.

use super::name::addr_label;
use super::Settings;
use crate::catalog::types::{Check, HealthStatus, Node, Service};
use crate::catalog::Catalog;
use arc_swap::{ArcSwap, Guard};
use hickory_proto::rr::rdata::{A, AAAA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

/// Where an instance or node can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Ip(IpAddr),
    /// A hostname (Consul's "external service"): answered with a CNAME.
    Host(Name),
    /// No usable address.
    None,
}

impl Address {
    fn parse(s: &str) -> Address {
        if s.is_empty() {
            return Address::None;
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Address::Ip(ip);
        }
        match Name::from_ascii(s) {
            Ok(mut n) => {
                n.set_fqdn(true);
                Address::Host(n)
            }
            Err(_) => Address::None,
        }
    }
}

/// A catalog node as DNS sees it.
#[derive(Debug)]
pub struct NodeEntry {
    pub name: String,
    pub address: Address,
    /// `<node>.node.<dc>.<domain>` for each served domain (`None` when the
    /// node name is not a valid DNS name).
    pub fqdn: Vec<Option<Name>>,
    /// Node meta as TXT data (RFC 1464 `key=value`, per Consul).
    pub meta: Vec<TXT>,
}

/// One healthy (or warning) service instance.
#[derive(Debug)]
pub struct Instance {
    pub node: Arc<NodeEntry>,
    /// The service's name as registered (not lower-cased): what ACL rules
    /// are matched against. Shared by the instances of one name.
    pub service: Arc<str>,
    /// The address clients connect to: the service's own, else the node's.
    pub address: Address,
    pub port: u16,
    /// Lower-cased; the DNS tag filter is case-insensitive.
    pub tags: Vec<String>,
    /// Identifies the (node, address, port) triple; SRV answers carry one
    /// record per triple.
    pub srv_key: u32,
    /// SRV answer data and its additional records, per served domain.
    pub srv: Vec<Option<SrvData>>,
}

#[derive(Debug)]
pub struct SrvData {
    pub rdata: RData,
    /// The target's A/AAAA and the node's meta TXT records.
    pub additional: Vec<Record>,
}

/// What an address reverses to, and whose it is (for the ACL check).
#[derive(Debug)]
pub struct PtrTarget {
    pub name: Name,
    pub node: Arc<NodeEntry>,
    /// Set when the address is a service's own.
    pub service: Option<Arc<str>>,
}

/// All instances of one service name.
#[derive(Debug)]
pub struct ServiceEntry {
    /// Answer TTL from `dns_config.service_ttl`.
    pub ttl: u32,
    pub instances: Vec<Instance>,
    /// Some instances share an IP (A answers are de-duplicated per IP).
    pub shared_ips: bool,
    /// Some instances share a (node, address, port) triple.
    pub shared_srv: bool,
}

#[derive(Debug, Default)]
pub struct Index {
    /// The catalog change index this was built from.
    pub catalog_index: u64,
    services: HashMap<String, ServiceEntry>,
    nodes: HashMap<String, Arc<NodeEntry>>,
    /// Nodes running a healthy `consul` service: the NS records.
    pub servers: Vec<Arc<NodeEntry>>,
    /// Reverse lookups: node addresses first, then service addresses.
    ptr: HashMap<IpAddr, PtrTarget>,
}

impl Index {
    /// Service by lower-cased name.
    pub fn service(&self, name: &str) -> Option<&ServiceEntry> {
        self.services.get(name)
    }

    /// Node by lower-cased name.
    pub fn node(&self, name: &str) -> Option<&Arc<NodeEntry>> {
        self.nodes.get(name)
    }

    pub fn ptr(&self, ip: &IpAddr) -> Option<&PtrTarget> {
        self.ptr.get(ip)
    }

    /// Reads the catalog and builds the index.
    pub fn load(catalog: &Catalog, settings: &Settings) -> Result<Index, heed::Error> {
        // Read the change index before opening the transaction: the tables
        // are then at least as new as the recorded index.
        let catalog_index = catalog.changes().catalog;
        let reader = catalog.reader()?;
        Ok(Index::build(
            settings,
            catalog_index,
            reader.nodes()?,
            reader.all_services()?,
            reader.all_checks()?,
        ))
    }

    /// Builds the index from plain catalog rows.
    pub fn build(
        settings: &Settings,
        catalog_index: u64,
        nodes: Vec<Node>,
        services: Vec<Service>,
        checks: Vec<Check>,
    ) -> Index {
        let mut node_status: HashMap<&str, HealthStatus> = HashMap::new();
        let mut service_status: HashMap<(&str, &str), HealthStatus> = HashMap::new();
        for c in &checks {
            let slot = if c.service_id.is_empty() {
                node_status.entry(c.node.as_str()).or_default()
            } else {
                service_status
                    .entry((c.node.as_str(), c.service_id.as_str()))
                    .or_default()
            };
            *slot = (*slot).max(c.status);
        }

        let mut by_name: HashMap<&str, Arc<NodeEntry>> = HashMap::new();
        let mut index = Index {
            catalog_index,
            ..Index::default()
        };
        for n in &nodes {
            let entry = Arc::new(node_entry(settings, n));
            if let Address::Ip(ip) = entry.address {
                if let Some(name) = entry.fqdn.first().cloned().flatten() {
                    index.ptr.entry(ip).or_insert_with(|| PtrTarget {
                        name,
                        node: entry.clone(),
                        service: None,
                    });
                }
            }
            by_name.insert(n.name.as_str(), entry.clone());
            index.nodes.insert(n.name.to_lowercase(), entry);
        }

        let mut srv_keys: HashMap<(&str, String, u16), u32> = HashMap::new();
        let mut names: HashMap<&str, Arc<str>> = HashMap::new();
        for svc in &services {
            let Some(node) = by_name.get(svc.node.as_str()) else {
                continue;
            };
            let status = node_status
                .get(svc.node.as_str())
                .copied()
                .unwrap_or_default()
                .max(
                    service_status
                        .get(&(svc.node.as_str(), svc.id.as_str()))
                        .copied()
                        .unwrap_or_default(),
                );
            if status == HealthStatus::Critical
                || (status == HealthStatus::Warning && settings.dns.only_passing)
            {
                continue;
            }
            let service_name = names
                .entry(svc.name.as_str())
                .or_insert_with(|| Arc::from(svc.name.as_str()))
                .clone();
            let key = svc.name.to_lowercase();
            // Consul looks the TTL up by the lower-cased name from the question.
            let ttl = ttl_secs(settings.dns.service_ttl_for(&key));
            let address = if svc.address.is_empty() {
                node.address.clone()
            } else {
                Address::parse(&svc.address)
            };
            if !svc.address.is_empty() {
                if let (Address::Ip(ip), Ok(name)) = (
                    &address,
                    fqdn(
                        &[&svc.name, "service", &settings.datacenter],
                        &settings.domains[0].text,
                    ),
                ) {
                    index.ptr.entry(*ip).or_insert_with(|| PtrTarget {
                        name,
                        node: node.clone(),
                        service: Some(service_name.clone()),
                    });
                }
            }
            let next_key = srv_keys.len() as u32;
            let srv_key = *srv_keys
                .entry((svc.node.as_str(), svc.address.clone(), svc.port))
                .or_insert(next_key);
            let weight = match status {
                HealthStatus::Warning => svc.weights.warning,
                _ => svc.weights.passing,
            }
            .min(u16::MAX as u32) as u16;
            let srv = settings
                .domains
                .iter()
                .enumerate()
                .map(|(d, domain)| {
                    srv_data(
                        settings,
                        node,
                        &svc.address,
                        &address,
                        svc.port,
                        weight,
                        ttl,
                        d,
                        &domain.text,
                    )
                })
                .collect();
            let instance = Instance {
                node: node.clone(),
                service: service_name,
                address,
                port: svc.port,
                tags: svc.tags.iter().map(|t| t.to_lowercase()).collect(),
                srv_key,
                srv,
            };
            let entry = index.services.entry(key).or_insert_with(|| ServiceEntry {
                ttl,
                instances: Vec::new(),
                shared_ips: false,
                shared_srv: false,
            });
            entry.instances.push(instance);
            if svc.name == "consul" && !index.servers.iter().any(|s| Arc::ptr_eq(s, node)) {
                index.servers.push(node.clone());
            }
        }
        for entry in index.services.values_mut() {
            let mut ips = HashSet::new();
            let mut keys = HashSet::new();
            for i in &entry.instances {
                if let Address::Ip(ip) = i.address {
                    entry.shared_ips |= !ips.insert(ip);
                }
                entry.shared_srv |= !keys.insert(i.srv_key);
            }
        }
        index
    }
}

fn node_entry(settings: &Settings, n: &Node) -> NodeEntry {
    let fqdn = settings
        .domains
        .iter()
        .map(|d| fqdn(&[&n.name, "node", &settings.datacenter], &d.text).ok())
        .collect();
    NodeEntry {
        name: n.name.clone(),
        address: Address::parse(&n.address),
        fqdn,
        meta: n.meta.iter().map(|(k, v)| meta_txt(k, v)).collect(),
    }
}

/// The SRV target and additional records of one instance in one domain.
/// Consul's target is the node's name when the service uses the node's
/// address, `<hex>.addr.<dc>.<domain>` when it has its own IP, or the
/// service's hostname.
#[allow(clippy::too_many_arguments)]
fn srv_data(
    settings: &Settings,
    node: &NodeEntry,
    service_address: &str,
    address: &Address,
    port: u16,
    weight: u16,
    ttl: u32,
    domain: usize,
    domain_text: &str,
) -> Option<SrvData> {
    let target = match (address, service_address.is_empty()) {
        (Address::None, _) => return None,
        (Address::Host(h), _) => h.clone(),
        (Address::Ip(_), true) => node.fqdn.get(domain).cloned().flatten()?,
        (Address::Ip(ip), false) => fqdn(
            &[&addr_label(*ip), "addr", &settings.datacenter],
            domain_text,
        )
        .ok()?,
    };
    let mut additional = Vec::new();
    if let Address::Ip(ip) = address {
        additional.push(Record::from_rdata(target.clone(), ttl, ip_rdata(*ip)));
    }
    if settings.dns.enable_additional_node_meta_txt {
        if let Some(owner) = node.fqdn.get(domain).cloned().flatten() {
            additional.extend(
                node.meta
                    .iter()
                    .map(|t| Record::from_rdata(owner.clone(), ttl, RData::TXT(t.clone()))),
            );
        }
    }
    Some(SrvData {
        rdata: RData::SRV(SRV::new(1, weight, port, target)),
        additional,
    })
}

pub fn ip_rdata(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(A(v4)),
        IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
    }
}

/// `a.b.c` + domain text (`consul.`) as a fully qualified name.
pub fn fqdn(parts: &[&str], domain_text: &str) -> Result<Name, hickory_proto::ProtoError> {
    let mut s = String::with_capacity(64);
    for p in parts {
        s.push_str(p);
        s.push('.');
    }
    s.push_str(domain_text);
    Name::from_ascii(&s)
}

pub fn ttl_secs(d: std::time::Duration) -> u32 {
    d.as_secs().min(u32::MAX as u64) as u32
}

/// Node meta as TXT data, as Consul's `generateMeta`: RFC 1464 `key=value`
/// with backquote escaping, or the bare value for `rfc1035-` keys. Strings
/// longer than 255 bytes are split into several character-strings.
pub fn meta_txt(key: &str, value: &str) -> TXT {
    let text = if key.to_ascii_lowercase().starts_with("rfc1035-") {
        value.to_string()
    } else {
        rfc1464(key, value)
    };
    let chunks: Vec<&[u8]> = if text.is_empty() {
        vec![&[][..]]
    } else {
        text.as_bytes().chunks(255).collect()
    };
    TXT::from_bytes(chunks)
}

fn rfc1464(key: &str, value: &str) -> String {
    let key = key.replace('`', "``").replace('=', "`=");
    let trimmed_start = key.trim_start_matches(' ');
    let leading = key.len() - trimmed_start.len();
    let core = trimmed_start.trim_end_matches(' ');
    let trailing = trimmed_start.len() - core.len();
    let mut out = String::with_capacity(key.len() + value.len() + 8);
    out.push_str(&"` ".repeat(leading));
    out.push_str(core);
    out.push_str(&"` ".repeat(trailing));
    out.push('=');
    out.push_str(&value.replace('`', "``"));
    out
}

/// The current index behind an atomic pointer, rebuilt on demand.
pub struct IndexCache {
    current: ArcSwap<Index>,
    rebuild: parking_lot::Mutex<()>,
}

impl Default for IndexCache {
    fn default() -> Self {
        IndexCache {
            current: ArcSwap::from_pointee(Index {
                catalog_index: u64::MAX,
                ..Index::default()
            }),
            rebuild: parking_lot::Mutex::new(()),
        }
    }
}

impl IndexCache {
    /// The index for the catalog as it is now. Rebuilds (one caller at a
    /// time; the others wait for it) when the catalog has changed since the
    /// last build. On a read error the previous index is served.
    pub fn get(&self, catalog: &Catalog, settings: &Settings) -> Guard<Arc<Index>> {
        let want = catalog.changes().catalog;
        let current = self.current.load();
        if current.catalog_index == want {
            return current;
        }
        drop(current);
        let _building = self.rebuild.lock();
        let current = self.current.load();
        if current.catalog_index == catalog.changes().catalog {
            return current;
        }
        match Index::load(catalog, settings) {
            Ok(index) => {
                self.current.store(Arc::new(index));
                self.current.load()
            }
            Err(e) => {
                tracing::warn!(
                    "dns: reading the catalog failed, answering from the previous index: {e}"
                );
                current
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn settings(only_passing: bool) -> Settings {
        let mut c = Config::default();
        c.dns.only_passing = only_passing;
        Settings::new(&c)
    }

    fn node(name: &str, addr: &str) -> Node {
        Node {
            name: name.into(),
            address: addr.into(),
            ..Node::default()
        }
    }

    fn service(node: &str, id: &str, name: &str, port: u16) -> Service {
        Service {
            node: node.into(),
            id: id.into(),
            name: name.into(),
            port,
            ..Service::default()
        }
    }

    fn check(node: &str, id: &str, service_id: &str, status: HealthStatus) -> Check {
        Check {
            node: node.into(),
            check_id: id.into(),
            service_id: service_id.into(),
            status,
            ..Check::default()
        }
    }

    #[test]
    fn filters_critical_and_warning_instances() {
        let nodes = vec![
            node("n1", "10.0.0.1"),
            node("n2", "10.0.0.2"),
            node("n3", "10.0.0.3"),
            node("n4", "10.0.0.4"),
        ];
        let services = vec![
            service("n1", "w1", "web", 80),
            service("n2", "w2", "web", 80),
            service("n3", "w3", "web", 80),
            service("n4", "w4", "web", 80),
        ];
        let checks = vec![
            check("n2", "serfHealth", "", HealthStatus::Critical),
            check("n3", "c3", "w3", HealthStatus::Warning),
            check("n4", "_node_maintenance", "", HealthStatus::Critical),
            check("n1", "serfHealth", "", HealthStatus::Passing),
        ];
        let idx = Index::build(
            &settings(false),
            1,
            nodes.clone(),
            services.clone(),
            checks.clone(),
        );
        let names: Vec<_> = idx
            .service("web")
            .unwrap()
            .instances
            .iter()
            .map(|i| i.node.name.as_str())
            .collect();
        assert_eq!(names, ["n1", "n3"]);
        let idx = Index::build(&settings(true), 1, nodes, services, checks);
        let names: Vec<_> = idx
            .service("web")
            .unwrap()
            .instances
            .iter()
            .map(|i| i.node.name.as_str())
            .collect();
        assert_eq!(names, ["n1"]);
    }

    #[test]
    fn srv_targets_and_weights() {
        let mut own = service("n1", "w2", "Web", 81);
        own.address = "10.1.2.3".into();
        let mut warn = service("n1", "w3", "web", 82);
        warn.weights.warning = 7;
        let mut n = node("n1", "10.0.0.1");
        n.meta.insert("rack".into(), "r1".into());
        let idx = Index::build(
            &settings(false),
            1,
            vec![n],
            vec![service("n1", "w1", "web", 80), own, warn],
            vec![check("n1", "c", "w3", HealthStatus::Warning)],
        );
        let web = idx.service("web").unwrap();
        assert_eq!(web.instances.len(), 3);
        assert!(web.shared_ips);
        let targets: Vec<String> = web
            .instances
            .iter()
            .map(|i| match &i.srv[0].as_ref().unwrap().rdata {
                RData::SRV(s) => format!("{} {} {}", s.weight, s.port, s.target),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            targets,
            [
                "1 80 n1.node.dc1.consul.",
                "1 81 0a010203.addr.dc1.consul.",
                "7 82 n1.node.dc1.consul."
            ]
        );
        let extra = &web.instances[0].srv[0].as_ref().unwrap().additional;
        assert_eq!(extra.len(), 2);
        assert_eq!(extra[1].data, RData::TXT(TXT::new(vec!["rack=r1".into()])));
        assert_eq!(
            idx.ptr(&"10.0.0.1".parse().unwrap())
                .unwrap()
                .name
                .to_string(),
            "n1.node.dc1.consul."
        );
        assert_eq!(
            idx.ptr(&"10.1.2.3".parse().unwrap())
                .unwrap()
                .name
                .to_string(),
            "Web.service.dc1.consul."
        );
    }

    #[test]
    fn rfc1464_escaping() {
        assert_eq!(rfc1464("key", "value"), "key=value");
        assert_eq!(rfc1464("a=b", "c`d"), "a`=b=c``d");
        assert_eq!(rfc1464(" k ", "v"), "` k` =v");
        assert_eq!(meta_txt("rfc1035-x", "raw"), TXT::new(vec!["raw".into()]));
        assert_eq!(meta_txt("long", &"x".repeat(300)).txt_data.len(), 2);
    }

    #[test]
    fn cache_rebuilds_after_catalog_change() {
        use crate::catalog::apply::apply;
        use crate::catalog::command::{Command, Registration};
        let dir = tempfile::tempdir().unwrap();
        let catalog = Catalog::open(dir.path()).unwrap();
        let s = settings(false);
        let cache = IndexCache::default();
        assert!(cache.get(&catalog, &s).service("web").is_none());
        let reg = Registration {
            node: node("n1", "10.0.0.1"),
            service: Some(service("n1", "w1", "web", 80)),
            checks: vec![],
            skip_node_update: false,
        };
        let mut txn = catalog.tables.env.write_txn().unwrap();
        apply(&catalog.tables, &mut txn, 5, &Command::Register(reg)).unwrap();
        txn.commit().unwrap();
        catalog.publish(5, Some(5), None);
        let idx = cache.get(&catalog, &s);
        assert_eq!(idx.catalog_index, 5);
        assert_eq!(idx.service("web").unwrap().instances.len(), 1);
    }
}
