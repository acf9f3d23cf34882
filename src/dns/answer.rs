//! Building the sections of a response from a parsed question and the
//! answer index, following Consul's DNS server: which records a lookup
//! yields, NXDOMAIN versus NODATA, the SOA and NS records, TTLs and the
//! per-response shuffle. Transport limits are applied afterwards
//! ([`super::truncate`]); `max_answers` only spares building records that
//! would be cut anyway.
//!
//! Under ACLs the answer is what the DNS token may read, as Consul's DNS
//! server sees the catalog through its token's filters: a service
//! instance needs `service:read` on its service and `node:read` on its
//! node, a node lookup `node:read`, a reverse lookup read on the node (and
//! service) owning the address; a name with nothing readable left is
//! NXDOMAIN, exactly as a name that does not exist.

use super::index::{ip_rdata, Address, Index, Instance, ServiceEntry};
use super::name::{self, Lookup, Zone};
use super::Settings;
use crate::acl::{Access, Authorizer, Resource};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{CNAME, NS, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use rand::seq::SliceRandom;
use std::net::IpAddr;

/// A question as the answer builder needs it.
pub struct Question<'a> {
    /// The name as the client sent it; answers are owned by it.
    pub name: &'a Name,
    /// Its labels, lower-cased, left to right, root excluded.
    pub labels: Vec<&'a str>,
    pub qtype: RecordType,
}

/// The sections of a response.
#[derive(Debug)]
pub struct Answer {
    pub rcode: ResponseCode,
    /// False only for names outside the served zones.
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additional: Vec<Record>,
    /// When additional records belong to answers (SRV targets): for each
    /// answer, the length of `additional` once its records are included.
    /// Dropping answers from the end keeps the matching prefix.
    pub additional_ends: Vec<usize>,
    /// Not answerable from the catalog: ask the recursors, if any.
    pub recurse: bool,
    /// A name in this other datacenter: ask a server there
    /// (`super::remote`), else NXDOMAIN.
    pub remote: Option<String>,
    /// A prepared query with no instance here and a failover policy: try
    /// the other datacenters (`super::remote`), else NXDOMAIN.
    pub failover: Option<Box<crate::catalog::prepared_query::PreparedQuery>>,
}

impl Answer {
    pub(super) fn new(rcode: ResponseCode) -> Answer {
        Answer {
            rcode,
            authoritative: true,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
            additional_ends: Vec::new(),
            recurse: false,
            remote: None,
            failover: None,
        }
    }

    /// Not a name cairn serves (and no recursors to ask).
    pub fn refused() -> Answer {
        Answer {
            authoritative: false,
            recurse: true,
            ..Answer::new(ResponseCode::Refused)
        }
    }

    pub fn error(rcode: ResponseCode) -> Answer {
        Answer::new(rcode)
    }

    /// An authoritative answer from a static zone file.
    pub fn from_zone(z: super::zones::ZoneAnswer) -> Answer {
        use super::zones::ZoneAnswer;
        match z {
            ZoneAnswer::Records(answers) => Answer {
                answers,
                ..Answer::new(ResponseCode::NoError)
            },
            ZoneAnswer::NoData(soa) => Answer {
                authority: soa.into_iter().collect(),
                ..Answer::new(ResponseCode::NoError)
            },
            ZoneAnswer::NxDomain(soa) => Answer {
                authority: soa.into_iter().collect(),
                ..Answer::new(ResponseCode::NXDomain)
            },
        }
    }

    fn with_soa(rcode: ResponseCode, settings: &Settings, domain: usize) -> Answer {
        let mut a = Answer::new(rcode);
        a.authority.push(soa(settings, domain));
        a
    }

    /// The name does not exist: NXDOMAIN with the SOA for negative caching.
    pub(super) fn nxdomain(settings: &Settings, domain: usize) -> Answer {
        Answer::with_soa(ResponseCode::NXDomain, settings, domain)
    }

    /// The name exists but has no records of the type asked for: RFC 2308
    /// type 2 NODATA (NOERROR, empty answer, SOA in authority).
    pub(super) fn nodata(settings: &Settings, domain: usize) -> Answer {
        Answer::with_soa(ResponseCode::NoError, settings, domain)
    }
}

/// Answers one question. `max_answers` bounds how many answer records are
/// worth building for the transport at hand.
pub fn answer(
    settings: &Settings,
    index: &Index,
    q: &Question<'_>,
    max_answers: usize,
    authz: &Authorizer,
) -> Answer {
    let max_answers = max_answers.max(1);
    match name::zone(&q.labels, &settings.domain_labels) {
        Zone::Foreign => Answer::refused(),
        Zone::Reverse => reverse(settings, index, q, authz),
        Zone::Catalog { domain, labels } => match q.qtype {
            RecordType::SOA => {
                let mut a = Answer::new(ResponseCode::NoError);
                a.answers.push(soa(settings, domain));
                (a.authority, a.additional) = nameservers(settings, index, domain);
                a
            }
            RecordType::NS => {
                let mut a = Answer::new(ResponseCode::NoError);
                (a.answers, a.additional) = nameservers(settings, index, domain);
                a
            }
            RecordType::AXFR | RecordType::IXFR => Answer::new(ResponseCode::NotImp),
            _ => dispatch(settings, index, q, domain, labels, max_answers, authz),
        },
    }
}

fn dispatch(
    settings: &Settings,
    index: &Index,
    q: &Question<'_>,
    domain: usize,
    labels: &[&str],
    max_answers: usize,
    authz: &Authorizer,
) -> Answer {
    match name::parse(labels, q.qtype == RecordType::SRV) {
        // The apex exists (it has SOA and NS records), so other types are
        // NODATA rather than Consul's NXDOMAIN: a negative answer for the
        // apex must not claim the whole zone away.
        Lookup::Apex => Answer::nodata(settings, domain),
        // Prepared queries are answered from the catalog by
        // `super::prepared` before this index is consulted.
        Lookup::Invalid | Lookup::Unsupported | Lookup::Query { .. } => {
            Answer::nxdomain(settings, domain)
        }
        Lookup::Service { datacenter, .. } | Lookup::Node { datacenter, .. }
            if !local_dc(settings, datacenter) =>
        {
            // Answered by the datacenter named (NXDOMAIN, as Consul's, when
            // there is no path to it).
            Answer {
                remote: datacenter.map(str::to_string),
                ..Answer::nxdomain(settings, domain)
            }
        }
        Lookup::Service { service, tag, .. } => match index.service(service) {
            None => Answer::nxdomain(settings, domain),
            Some(entry) => service_answer(
                settings,
                q,
                domain,
                entry,
                tag.as_deref(),
                max_answers,
                authz,
            ),
        },
        Lookup::Node { node, .. } => node_answer(settings, index, q, domain, &node, authz),
        Lookup::Addr(ip) => addr_answer(settings, q, ip),
    }
}

pub(super) fn local_dc(settings: &Settings, dc: Option<&str>) -> bool {
    dc.is_none_or(|dc| dc == settings.datacenter_lower)
}

fn service_answer(
    settings: &Settings,
    q: &Question<'_>,
    domain: usize,
    entry: &ServiceEntry,
    tag: Option<&str>,
    max_answers: usize,
    authz: &Authorizer,
) -> Answer {
    let mut picked: Vec<&Instance> = match tag {
        None => entry.instances.iter().collect(),
        Some(tag) => entry
            .instances
            .iter()
            .filter(|i| i.tags.iter().any(|t| t == tag))
            .collect(),
    };
    // With ACLs off this is one branch; with them on, a lookup per
    // instance against the rules, without allocating.
    if authz.enabled() {
        picked.retain(|i| {
            authz.allows(Resource::Service, &i.service, Access::Read)
                && authz.allows(Resource::Node, &i.node.name, Access::Read)
        });
    }
    if picked.is_empty() {
        return Answer::nxdomain(settings, domain);
    }
    // Consul shuffles the instances on every response. Shuffling lazily
    // costs only as many draws as answers are built.
    let expected = picked.len().min(max_answers);
    let shuffled = LazyShuffle {
        items: &mut picked,
        next: 0,
        rng: rand::rng(),
    };
    let mut a = Answer::new(ResponseCode::NoError);
    a.answers.reserve_exact(expected);
    if q.qtype == RecordType::SRV {
        a.additional.reserve(expected * 2);
        a.additional_ends.reserve_exact(expected);
        srv_records(&mut a, q, domain, entry, shuffled, max_answers);
    } else {
        address_records(&mut a, settings, q, entry, shuffled, max_answers);
    }
    if a.answers.is_empty() {
        return Answer::nodata(settings, domain);
    }
    a
}

/// One SRV record per (node, address, port), with the target's address
/// and node meta in the additional section (once per target).
pub(super) fn srv_records<'i>(
    a: &mut Answer,
    q: &Question<'_>,
    domain: usize,
    entry: &ServiceEntry,
    picked: impl Iterator<Item = &'i Instance>,
    max_answers: usize,
) {
    let mut seen_keys: Vec<u32> = Vec::new();
    for inst in picked {
        if a.answers.len() >= max_answers {
            break;
        }
        if entry.shared_srv {
            if seen_keys.contains(&inst.srv_key) {
                continue;
            }
            seen_keys.push(inst.srv_key);
        }
        let Some(data) = inst.srv.get(domain).and_then(Option::as_ref) else {
            continue;
        };
        let target = match &data.rdata {
            RData::SRV(srv) => &srv.target,
            _ => continue,
        };
        let repeated = a
            .answers
            .iter()
            .any(|r| matches!(&r.data, RData::SRV(s) if s.target == *target));
        a.answers.push(Record::from_rdata(
            q.name.clone(),
            entry.ttl,
            data.rdata.clone(),
        ));
        if !repeated {
            a.additional.extend(data.additional.iter().cloned());
        }
        a.additional_ends.push(a.additional.len());
    }
}

/// A/AAAA records (owner = the question) for A, AAAA, ANY and TXT questions
/// (Consul answers TXT on a service with addresses too), one per distinct
/// IP, at most `a_record_limit`. Hostname addresses become one CNAME when no
/// IP answers.
pub(super) fn address_records<'i>(
    a: &mut Answer,
    settings: &Settings,
    q: &Question<'_>,
    entry: &ServiceEntry,
    picked: impl Iterator<Item = &'i Instance>,
    max_answers: usize,
) {
    let (v4, v6) = wanted_families(q.qtype);
    let mut limit = max_answers;
    if settings.dns.a_record_limit > 0 {
        limit = limit.min(settings.dns.a_record_limit);
    }
    let mut seen: Vec<IpAddr> = Vec::new();
    let mut cname: Option<&Name> = None;
    for inst in picked {
        if a.answers.len() >= limit {
            break;
        }
        match &inst.address {
            Address::Ip(ip) if (ip.is_ipv4() && v4) || (ip.is_ipv6() && v6) => {
                if entry.shared_ips {
                    if seen.contains(ip) {
                        continue;
                    }
                    seen.push(*ip);
                }
                a.answers
                    .push(Record::from_rdata(q.name.clone(), entry.ttl, ip_rdata(*ip)));
            }
            Address::Host(h) if (v4 || v6) && cname.is_none() => cname = Some(h),
            _ => {}
        }
    }
    if a.answers.is_empty() {
        if let Some(h) = cname {
            a.answers.push(Record::from_rdata(
                q.name.clone(),
                entry.ttl,
                RData::CNAME(CNAME(h.clone())),
            ));
        }
    }
}

/// A Fisher-Yates shuffle that draws one element at a time: taking `k`
/// elements of `n` costs `k` random draws, and what is taken is a uniform
/// random ordered sample.
struct LazyShuffle<'v, 'i, R> {
    items: &'v mut [&'i Instance],
    next: usize,
    rng: R,
}

impl<'i, R: rand::Rng> Iterator for LazyShuffle<'_, 'i, R> {
    type Item = &'i Instance;

    fn next(&mut self) -> Option<&'i Instance> {
        use rand::RngExt;
        let len = self.items.len();
        if self.next >= len {
            return None;
        }
        let j = self.rng.random_range(self.next..len);
        self.items.swap(self.next, j);
        let item = self.items[self.next];
        self.next += 1;
        Some(item)
    }
}

/// Which address families a question type takes (Consul's `makeARecord`).
fn wanted_families(qtype: RecordType) -> (bool, bool) {
    match qtype {
        RecordType::A => (true, false),
        RecordType::AAAA => (false, true),
        RecordType::ANY | RecordType::TXT => (true, true),
        _ => (false, false),
    }
}

/// `<node>.node[.<dc>]`: the node's address, and its meta as TXT (in the
/// answer for TXT/ANY, else in additional). Only A, AAAA, ANY and TXT are
/// answered; other types get an empty NOERROR, as in Consul.
fn node_answer(
    settings: &Settings,
    index: &Index,
    q: &Question<'_>,
    domain: usize,
    node: &str,
    authz: &Authorizer,
) -> Answer {
    let Some(node) = index
        .node(node)
        .filter(|n| authz.allows(Resource::Node, &n.name, Access::Read))
    else {
        return Answer::nxdomain(settings, domain);
    };
    let mut a = Answer::new(ResponseCode::NoError);
    if !matches!(
        q.qtype,
        RecordType::A | RecordType::AAAA | RecordType::ANY | RecordType::TXT
    ) {
        return a;
    }
    let ttl = super::index::ttl_secs(settings.dns.node_ttl);
    let (v4, v6) = match q.qtype {
        RecordType::TXT => (false, false),
        other => wanted_families(other),
    };
    match &node.address {
        Address::Ip(ip) if (ip.is_ipv4() && v4) || (ip.is_ipv6() && v6) => {
            a.answers
                .push(Record::from_rdata(q.name.clone(), ttl, ip_rdata(*ip)));
        }
        Address::Host(h) if v4 || v6 => {
            a.answers.push(Record::from_rdata(
                q.name.clone(),
                ttl,
                RData::CNAME(CNAME(h.clone())),
            ));
        }
        _ => {}
    }
    let meta = node
        .meta
        .iter()
        .map(|t| Record::from_rdata(q.name.clone(), ttl, RData::TXT(t.clone())));
    if matches!(q.qtype, RecordType::TXT | RecordType::ANY) {
        a.answers.extend(meta);
    } else if settings.dns.enable_additional_node_meta_txt {
        a.additional.extend(meta);
    }
    a
}

/// `<hex>.addr`: the address itself; in additional when the question type
/// does not match its family (Consul's behaviour).
fn addr_answer(settings: &Settings, q: &Question<'_>, ip: IpAddr) -> Answer {
    let mut a = Answer::new(ResponseCode::NoError);
    let record = Record::from_rdata(
        q.name.clone(),
        super::index::ttl_secs(settings.dns.node_ttl),
        ip_rdata(ip),
    );
    let matches = match ip {
        IpAddr::V4(_) => matches!(q.qtype, RecordType::A | RecordType::ANY),
        IpAddr::V6(_) => matches!(q.qtype, RecordType::AAAA | RecordType::ANY),
    };
    if matches {
        a.answers.push(record);
    } else {
        a.additional.push(record);
    }
    a
}

/// PTR for a node address (`<node>.node.<dc>.<domain>`) or a service's own
/// address (`<svc>.service.<dc>.<domain>`), always in the primary domain,
/// TTL 0. Unknown addresses are NXDOMAIN (cairn has no recursors).
fn reverse(settings: &Settings, index: &Index, q: &Question<'_>, authz: &Authorizer) -> Answer {
    let ip = q
        .name
        .parse_arpa_name()
        .ok()
        .and_then(|net| (net.prefix_len() == net.max_prefix_len()).then(|| net.addr()));
    // An address the token may not see the owner of is unknown to it.
    let readable = |t: &&super::index::PtrTarget| {
        authz.allows(Resource::Node, &t.node.name, Access::Read)
            && t.service
                .as_ref()
                .is_none_or(|s| authz.allows(Resource::Service, s, Access::Read))
    };
    let Some(target) = ip.and_then(|ip| index.ptr(&ip)).filter(readable) else {
        return Answer {
            recurse: true,
            ..Answer::nxdomain(settings, 0)
        };
    };
    let mut a = Answer::new(ResponseCode::NoError);
    if matches!(q.qtype, RecordType::PTR | RecordType::ANY) {
        a.answers.push(Record::from_rdata(
            q.name.clone(),
            0,
            RData::PTR(PTR(target.name.clone())),
        ));
    } else {
        a.authority.push(soa(settings, 0));
    }
    a
}

/// The zone's SOA, as Consul builds it: `ns.<domain>`, `hostmaster.<domain>`,
/// serial = now in unix seconds, timers from `dns_config.soa`, RR TTL =
/// `soa.min_ttl` (so negative answers are cached that long).
pub fn soa(settings: &Settings, domain: usize) -> Record {
    let d = &settings.domains[domain];
    let c = &settings.dns.soa;
    let serial = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    let to_i32 = |v: u32| v.min(i32::MAX as u32) as i32;
    Record::from_rdata(
        d.name.clone(),
        c.min_ttl,
        RData::SOA(SOA::new(
            d.mname.clone(),
            d.rname.clone(),
            serial,
            to_i32(c.refresh),
            to_i32(c.retry),
            to_i32(c.expire),
            c.min_ttl,
        )),
    )
}

/// Up to three random servers (nodes running a healthy `consul` service) as
/// NS records of the domain, with their addresses as glue.
fn nameservers(settings: &Settings, index: &Index, domain: usize) -> (Vec<Record>, Vec<Record>) {
    let ttl = super::index::ttl_secs(settings.dns.node_ttl);
    let mut servers: Vec<_> = index.servers.iter().collect();
    servers.shuffle(&mut rand::rng());
    let owner = &settings.domains[domain].name;
    let mut ns = Vec::new();
    let mut glue = Vec::new();
    for s in servers {
        let Some(fqdn) = s.fqdn.get(domain).cloned().flatten() else {
            continue;
        };
        let fqdn = fqdn.to_lowercase();
        if let Address::Ip(ip) = s.address {
            glue.push(Record::from_rdata(fqdn.clone(), ttl, ip_rdata(ip)));
        }
        ns.push(Record::from_rdata(owner.clone(), ttl, RData::NS(NS(fqdn))));
        if ns.len() >= 3 {
            break;
        }
    }
    (ns, glue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::types::{Check, HealthStatus, Node, Service};
    use crate::config::Config;

    fn settings(f: impl FnOnce(&mut Config)) -> Settings {
        let mut c = Config {
            alt_domain: Some("cairn.example.".into()),
            ..Config::default()
        };
        f(&mut c);
        Settings::new(&c)
    }

    fn catalog(settings: &Settings) -> Index {
        let mut n1 = Node {
            name: "n1".into(),
            address: "10.0.0.1".into(),
            ..Node::default()
        };
        n1.meta.insert("rack".into(), "r1".into());
        let n2 = Node {
            name: "n2".into(),
            address: "10.0.0.2".into(),
            ..Node::default()
        };
        let n3 = Node {
            name: "n3".into(),
            address: "10.0.0.3".into(),
            ..Node::default()
        };
        let n6 = Node {
            name: "n6".into(),
            address: "2001:db8::6".into(),
            ..Node::default()
        };
        let svc = |node: &str, id: &str, name: &str, port: u16, tags: &[&str]| Service {
            node: node.into(),
            id: id.into(),
            name: name.into(),
            port,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..Service::default()
        };
        let services = vec![
            svc("n1", "web1", "web", 80, &["v1", "primary"]),
            svc("n2", "web2", "web", 81, &["v2"]),
            svc("n3", "web3", "web", 82, &["v1"]),
            svc("n1", "db1", "db", 5432, &[]),
            svc("n2", "db2", "db", 5432, &[]),
            svc("n6", "v6", "six", 443, &[]),
            svc("n1", "consul", "consul", 8300, &[]),
        ];
        let checks = vec![Check {
            node: "n2".into(),
            check_id: "db2-check".into(),
            service_id: "db2".into(),
            status: HealthStatus::Critical,
            ..Check::default()
        }];
        Index::build(settings, 7, vec![n1, n2, n3, n6], services, checks)
    }

    fn ask(settings: &Settings, index: &Index, name: &str, qtype: RecordType) -> Answer {
        ask_as(settings, index, name, qtype, &Authorizer::allow_all())
    }

    fn ask_as(
        settings: &Settings,
        index: &Index,
        name: &str,
        qtype: RecordType,
        authz: &Authorizer,
    ) -> Answer {
        let owner = Name::from_ascii(name).unwrap();
        let lower = name.to_ascii_lowercase();
        let labels: Vec<&str> = lower
            .trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
            .collect();
        answer(
            settings,
            index,
            &Question {
                name: &owner,
                labels,
                qtype,
            },
            1000,
            authz,
        )
    }

    fn texts(records: &[Record]) -> Vec<String> {
        let mut v: Vec<String> = records
            .iter()
            .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn srv_with_additional_addresses_and_meta() {
        let s = settings(|_| {});
        let idx = catalog(&s);
        let a = ask(&s, &idx, "web.service.consul.", RecordType::SRV);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert_eq!(
            texts(&a.answers),
            [
                "web.service.consul. SRV 1 1 80 n1.node.dc1.consul.",
                "web.service.consul. SRV 1 1 81 n2.node.dc1.consul.",
                "web.service.consul. SRV 1 1 82 n3.node.dc1.consul."
            ]
        );
        assert_eq!(
            texts(&a.additional),
            [
                "n1.node.dc1.consul. A 10.0.0.1",
                "n1.node.dc1.consul. TXT rack=r1",
                "n2.node.dc1.consul. A 10.0.0.2",
                "n3.node.dc1.consul. A 10.0.0.3"
            ]
        );
        assert_eq!(a.additional_ends.len(), 3);
        assert_eq!(*a.additional_ends.last().unwrap(), 4);
    }

    #[test]
    fn alt_domain_answers_in_that_domain() {
        let s = settings(|_| {});
        let idx = catalog(&s);
        let a = ask(&s, &idx, "v2.web.service.cairn.example.", RecordType::SRV);
        assert_eq!(
            texts(&a.answers),
            ["v2.web.service.cairn.example. SRV 1 1 81 n2.node.dc1.cairn.example."]
        );
        let a = ask(&s, &idx, "nope.service.cairn.example.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NXDomain);
        assert_eq!(a.authority[0].name.to_string(), "cairn.example.");
    }

    #[test]
    fn tags_and_rfc2782() {
        let s = settings(|_| {});
        let idx = catalog(&s);
        assert_eq!(
            ask(&s, &idx, "V1.web.service.consul.", RecordType::A)
                .answers
                .len(),
            2
        );
        assert_eq!(
            ask(&s, &idx, "_web._v1.service.consul.", RecordType::SRV)
                .answers
                .len(),
            2
        );
        assert_eq!(
            ask(&s, &idx, "_web._tcp.consul.", RecordType::SRV)
                .answers
                .len(),
            3
        );
        assert_eq!(
            ask(&s, &idx, "_web._tcp.dc1.consul.", RecordType::SRV)
                .answers
                .len(),
            3
        );
        assert_eq!(
            ask(&s, &idx, "v9.web.service.consul.", RecordType::A).rcode,
            ResponseCode::NXDomain
        );
        assert_eq!(
            ask(&s, &idx, "web.service.dc1.dc.consul.", RecordType::A)
                .answers
                .len(),
            3
        );
        assert_eq!(
            ask(&s, &idx, "web.service.dc2.consul.", RecordType::A).rcode,
            ResponseCode::NXDomain
        );
    }

    #[test]
    fn acl_hides_what_the_token_cannot_read() {
        use crate::acl::{Level, Rules};
        let s = settings(|_| {});
        let idx = catalog(&s);
        let deny = Authorizer::compile("a", &[], false, false);
        for name in ["web.service.consul.", "n1.node.consul."] {
            let a = ask_as(&s, &idx, name, RecordType::A, &deny);
            assert_eq!(a.rcode, ResponseCode::NXDomain, "{name}");
        }
        let a = ask_as(&s, &idx, "1.0.0.10.in-addr.arpa.", RecordType::PTR, &deny);
        assert_eq!(a.rcode, ResponseCode::NXDomain);

        // Read on web and on n1 only: web answers with n1's instance alone.
        let mut rules = Rules::default();
        rules.add(Resource::Service, "web", false, Level::Read);
        rules.add(Resource::Node, "n1", false, Level::Read);
        let some = Authorizer::compile("a", &[rules], false, false);
        let a = ask_as(&s, &idx, "web.service.consul.", RecordType::A, &some);
        assert_eq!(texts(&a.answers), ["web.service.consul. A 10.0.0.1"]);
        let a = ask_as(&s, &idx, "db.service.consul.", RecordType::A, &some);
        assert_eq!(a.rcode, ResponseCode::NXDomain);
        let a = ask_as(&s, &idx, "n1.node.consul.", RecordType::A, &some);
        assert_eq!(texts(&a.answers), ["n1.node.consul. A 10.0.0.1"]);
        let a = ask_as(&s, &idx, "n2.node.consul.", RecordType::A, &some);
        assert_eq!(a.rcode, ResponseCode::NXDomain);
        let a = ask_as(&s, &idx, "1.0.0.10.in-addr.arpa.", RecordType::PTR, &some);
        assert_eq!(a.answers.len(), 1);
    }

    #[test]
    fn health_nxdomain_and_nodata() {
        let s = settings(|_| {});
        let idx = catalog(&s);
        let a = ask(&s, &idx, "db.service.consul.", RecordType::A);
        assert_eq!(texts(&a.answers), ["db.service.consul. A 10.0.0.1"]);
        let a = ask(&s, &idx, "missing.service.consul.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::NXDomain);
        assert_eq!(a.authority[0].record_type(), RecordType::SOA);
        // IPv4-only service asked for AAAA: NODATA.
        let a = ask(&s, &idx, "db.service.consul.", RecordType::AAAA);
        assert_eq!(a.rcode, ResponseCode::NoError);
        assert!(a.answers.is_empty());
        assert_eq!(a.authority[0].record_type(), RecordType::SOA);
        let a = ask(&s, &idx, "six.service.consul.", RecordType::AAAA);
        assert_eq!(texts(&a.answers), ["six.service.consul. AAAA 2001:db8::6"]);
        // TXT and ANY on a service give addresses, as Consul does.
        assert_eq!(
            ask(&s, &idx, "web.service.consul.", RecordType::TXT)
                .answers
                .len(),
            3
        );
        assert_eq!(
            ask(&s, &idx, "six.service.consul.", RecordType::ANY)
                .answers
                .len(),
            1
        );
    }

    #[test]
    fn nodes_and_addrs() {
        let s = settings(|c| c.dns.node_ttl = std::time::Duration::from_secs(30));
        let idx = catalog(&s);
        let a = ask(&s, &idx, "n1.node.consul.", RecordType::A);
        assert_eq!(texts(&a.answers), ["n1.node.consul. A 10.0.0.1"]);
        assert_eq!(a.answers[0].ttl, 30);
        assert_eq!(texts(&a.additional), ["n1.node.consul. TXT rack=r1"]);
        let a = ask(&s, &idx, "n1.node.dc1.consul.", RecordType::TXT);
        assert_eq!(texts(&a.answers), ["n1.node.dc1.consul. TXT rack=r1"]);
        let a = ask(&s, &idx, "n1.node.consul.", RecordType::ANY);
        assert_eq!(a.answers.len(), 2);
        let a = ask(&s, &idx, "n1.node.consul.", RecordType::MX);
        assert_eq!(
            (a.rcode, a.answers.len(), a.authority.len()),
            (ResponseCode::NoError, 0, 0)
        );
        assert_eq!(
            ask(&s, &idx, "zz.node.consul.", RecordType::A).rcode,
            ResponseCode::NXDomain
        );
        let a = ask(&s, &idx, "0a000009.addr.dc1.consul.", RecordType::A);
        assert_eq!(texts(&a.answers), ["0a000009.addr.dc1.consul. A 10.0.0.9"]);
        let a = ask(&s, &idx, "0a000009.addr.dc1.consul.", RecordType::SRV);
        assert!(a.answers.is_empty());
        assert_eq!(a.additional.len(), 1);
    }

    #[test]
    fn soa_ns_and_refused() {
        let s = settings(|c| c.dns.soa.min_ttl = 5);
        let idx = catalog(&s);
        let a = ask(&s, &idx, "consul.", RecordType::SOA);
        assert_eq!(a.answers.len(), 1);
        let RData::SOA(soa) = &a.answers[0].data else {
            panic!()
        };
        assert_eq!(soa.mname.to_string(), "ns.consul.");
        assert_eq!(soa.rname.to_string(), "hostmaster.consul.");
        assert_eq!(
            (
                soa.refresh,
                soa.retry,
                soa.expire,
                soa.minimum,
                a.answers[0].ttl
            ),
            (3600, 600, 86400, 5, 5)
        );
        assert_eq!(texts(&a.authority), ["consul. NS n1.node.dc1.consul."]);
        assert_eq!(texts(&a.additional), ["n1.node.dc1.consul. A 10.0.0.1"]);
        let a = ask(&s, &idx, "consul.", RecordType::NS);
        assert_eq!(texts(&a.answers), ["consul. NS n1.node.dc1.consul."]);
        let a = ask(&s, &idx, "consul.", RecordType::A);
        assert_eq!(
            (a.rcode, a.answers.len(), a.authority.len()),
            (ResponseCode::NoError, 0, 1)
        );
        assert_eq!(
            ask(&s, &idx, "consul.", RecordType::AXFR).rcode,
            ResponseCode::NotImp
        );
        let a = ask(&s, &idx, "example.com.", RecordType::A);
        assert_eq!(a.rcode, ResponseCode::Refused);
        assert!(!a.authoritative);
    }

    #[test]
    fn reverse_lookups() {
        let s = settings(|_| {});
        let idx = catalog(&s);
        let a = ask(&s, &idx, "1.0.0.10.in-addr.arpa.", RecordType::PTR);
        assert_eq!(
            texts(&a.answers),
            ["1.0.0.10.in-addr.arpa. PTR n1.node.dc1.consul."]
        );
        assert_eq!(
            ask(&s, &idx, "9.9.9.10.in-addr.arpa.", RecordType::PTR).rcode,
            ResponseCode::NXDomain
        );
    }

    #[test]
    fn a_record_limit_and_shuffle() {
        let s = settings(|c| c.dns.a_record_limit = 2);
        let idx = catalog(&s);
        assert_eq!(
            ask(&s, &idx, "web.service.consul.", RecordType::A)
                .answers
                .len(),
            2
        );
        // SRV is not limited by a_record_limit.
        assert_eq!(
            ask(&s, &idx, "web.service.consul.", RecordType::SRV)
                .answers
                .len(),
            3
        );
        let s = settings(|_| {});
        let idx = catalog(&s);
        let orders: std::collections::HashSet<String> = (0..50)
            .map(|_| {
                format!(
                    "{:?}",
                    ask(&s, &idx, "web.service.consul.", RecordType::A).answers
                )
            })
            .collect();
        assert!(orders.len() > 1, "answers were never shuffled");
    }

    #[test]
    fn node_meta_in_additional_can_be_turned_off() {
        let s = settings(|c| c.dns.enable_additional_node_meta_txt = false);
        let idx = catalog(&s);
        assert!(ask(&s, &idx, "n1.node.consul.", RecordType::A)
            .additional
            .is_empty());
        let a = ask(&s, &idx, "v1.web.service.consul.", RecordType::SRV);
        assert!(a
            .additional
            .iter()
            .all(|r| r.record_type() == RecordType::A));
        // Asked for explicitly, the meta is still answered.
        assert_eq!(
            ask(&s, &idx, "n1.node.consul.", RecordType::TXT)
                .answers
                .len(),
            1
        );
    }

    #[test]
    fn arbitrary_names_never_panic() {
        use rand::RngExt;
        let s = settings(|c| c.dns.a_record_limit = 1);
        let idx = catalog(&s);
        let vocab = [
            "consul",
            "cairn",
            "example",
            "service",
            "node",
            "addr",
            "query",
            "connect",
            "virtual",
            "ingress",
            "dc",
            "dc1",
            "dc2",
            "peer",
            "sg",
            "ns",
            "ap",
            "_web",
            "_tcp",
            "_",
            "web",
            "n1",
            "db",
            "0a000001",
            "zz",
            "20010db8000000000000000000000006",
            "in-addr",
            "ip6",
            "arpa",
            "1",
            "10",
            "",
        ];
        let types = [
            RecordType::A,
            RecordType::AAAA,
            RecordType::SRV,
            RecordType::TXT,
            RecordType::ANY,
            RecordType::SOA,
            RecordType::NS,
            RecordType::PTR,
            RecordType::MX,
            RecordType::CNAME,
            RecordType::AXFR,
        ];
        let mut rng = rand::rng();
        for _ in 0..5000 {
            let n = rng.random_range(0..7);
            let labels: Vec<&str> = (0..n)
                .map(|_| vocab[rng.random_range(0..vocab.len())])
                .collect();
            let owner = Name::root();
            let qtype = types[rng.random_range(0..types.len())];
            let q = Question {
                name: &owner,
                labels: labels.clone(),
                qtype,
            };
            let max = rng.random_range(0..5);
            let mut a = answer(&s, &idx, &q, max, &Authorizer::allow_all());
            let budget = super::super::truncate::Budget::udp(None, 3);
            super::super::truncate::fit(&mut a, &owner, 0, &budget);
        }
    }
}
