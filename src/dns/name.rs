//! The query-name grammar: which zone a name falls in, and inside the
//! catalog domain which lookup it asks for. Pure functions over lower-cased
//! labels; nothing here knows about the catalog or the wire.
//!
//! Consul's `dispatch` scans the labels left of the domain right to left for
//! the first of `service|connect|virtual|ingress|node|query|addr`. Labels on
//! its left are the query parts, labels on its right the locality suffix
//! (`<dc>`, `<dc>.dc`, `<peer>.peer`, ...). For SRV questions a label that
//! starts with `_` implies `service`, so `_web._tcp.consul` works.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where a question name falls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone<'s, 'a> {
    /// Inside one of the served domains: `domain` indexes the configured
    /// domain list (0 = `domain`, 1 = `alt_domain`), `labels` are the labels
    /// left of it.
    Catalog {
        domain: usize,
        labels: &'s [&'a str],
    },
    /// Under `in-addr.arpa.` or `ip6.arpa.`: a reverse lookup.
    Reverse,
    /// Anything else: not ours.
    Foreign,
}

/// Splits `labels` (lower-cased, root excluded, left to right) into a zone.
/// `domains` are the served domains as label lists, lower-cased; the longest
/// one that matches wins (as Consul's `trimDomain` prefers the longer).
pub fn zone<'s, 'a>(labels: &'s [&'a str], domains: &[Vec<String>]) -> Zone<'s, 'a> {
    let mut best: Option<(usize, usize)> = None;
    for (i, d) in domains.iter().enumerate() {
        if d.len() <= labels.len()
            && labels[labels.len() - d.len()..]
                .iter()
                .zip(d)
                .all(|(a, b)| *a == b.as_str())
            && best.is_none_or(|(_, len)| d.len() > len)
        {
            best = Some((i, d.len()));
        }
    }
    if let Some((domain, len)) = best {
        return Zone::Catalog {
            domain,
            labels: &labels[..labels.len() - len],
        };
    }
    match labels {
        [.., "in-addr" | "ip6", "arpa"] => Zone::Reverse,
        _ => Zone::Foreign,
    }
}

/// What a name inside the catalog domain asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The domain itself (`consul.`).
    Apex,
    /// `[tag.]<svc>.service[.<dc>]` or `_<svc>._<tag>[.service][.<dc>]`.
    Service {
        service: &'a str,
        tag: Option<Cow<'a, str>>,
        datacenter: Option<&'a str>,
    },
    /// `<node>.node[.<dc>]`; node names may contain dots.
    Node {
        node: Cow<'a, str>,
        datacenter: Option<&'a str>,
    },
    /// `<hex>.addr[...]`: an IPv4 (8 hex digits) or IPv6 (32) address.
    Addr(IpAddr),
    /// `<name>.query[.<dc>]` or `_<name>._<proto>.query[.<dc>]`: a prepared
    /// query by ID or name (dots allowed, as Consul joins the labels).
    Query {
        name: Cow<'a, str>,
        datacenter: Option<&'a str>,
    },
    /// Grammar Consul knows but cairn does not serve: prepared queries,
    /// Connect, ingress and virtual-IP lookups, peers and sameness groups.
    /// Answered like a name that does not exist.
    Unsupported,
    /// Not a valid name in the domain: NXDOMAIN.
    Invalid,
}

const KINDS: [&str; 7] = [
    "service", "connect", "virtual", "ingress", "node", "query", "addr",
];

/// Parses the labels left of the domain. `srv` says whether the question
/// type is SRV (which makes `.service` optional in the RFC 2782 form).
pub fn parse<'a>(labels: &[&'a str], srv: bool) -> Lookup<'a> {
    if labels.is_empty() {
        return Lookup::Apex;
    }
    let mut found = None;
    for i in (0..labels.len()).rev() {
        if KINDS.contains(&labels[i]) {
            found = Some((labels[i], &labels[..i], &labels[i + 1..]));
            break;
        }
        if srv && labels[i].starts_with('_') {
            found = Some(("service", &labels[..=i], &labels[i + 1..]));
            break;
        }
    }
    let Some((kind, parts, suffix)) = found else {
        return Lookup::Invalid;
    };
    match kind {
        "service" => parse_service(parts, suffix),
        "node" => {
            if parts.is_empty() {
                return Lookup::Invalid;
            }
            match locality(suffix) {
                Locality::Local => Lookup::Node {
                    node: join(parts),
                    datacenter: None,
                },
                Locality::Datacenter(dc) => Lookup::Node {
                    node: join(parts),
                    datacenter: Some(dc),
                },
                Locality::Unsupported => Lookup::Unsupported,
                Locality::Invalid => Lookup::Invalid,
            }
        }
        "addr" => match parts {
            [hex] => parse_addr(hex).map(Lookup::Addr).unwrap_or(Lookup::Invalid),
            _ => Lookup::Invalid,
        },
        "query" if !parts.is_empty() => parse_query(parts, suffix),
        // connect, ingress, virtual, query
        _ if parts.is_empty() => Lookup::Invalid,
        _ => Lookup::Unsupported,
    }
}

fn parse_query<'a>(parts: &[&'a str], suffix: &[&'a str]) -> Lookup<'a> {
    let datacenter = match locality(suffix) {
        Locality::Local => None,
        Locality::Datacenter(dc) => Some(dc),
        Locality::Unsupported => return Lookup::Unsupported,
        Locality::Invalid => return Lookup::Invalid,
    };
    let name = match parts {
        // RFC 2782: `_<name>._tcp` asks for `<name>`.
        [name, proto] if name.len() > 1 && name.starts_with('_') && proto.starts_with('_') => {
            Cow::Borrowed(&name[1..])
        }
        _ => join(parts),
    };
    Lookup::Query { name, datacenter }
}

fn parse_service<'a>(parts: &[&'a str], suffix: &[&'a str]) -> Lookup<'a> {
    let datacenter = match locality(suffix) {
        Locality::Local => None,
        Locality::Datacenter(dc) => Some(dc),
        Locality::Unsupported => return Lookup::Unsupported,
        Locality::Invalid => return Lookup::Invalid,
    };
    match parts {
        [] => Lookup::Invalid,
        // RFC 2782: `_<svc>._<proto|tag>`; `_tcp` means no tag filter.
        [svc, tag] if svc.starts_with('_') && tag.starts_with('_') => {
            let service = &svc[1..];
            let tag = &tag[1..];
            if service.is_empty() {
                return Lookup::Invalid;
            }
            let tag = (tag != "tcp" && !tag.is_empty()).then_some(Cow::Borrowed(tag));
            Lookup::Service {
                service,
                tag,
                datacenter,
            }
        }
        // `[tag.]<svc>`; more labels are a dotted tag (Consul's legacy form).
        [tags @ .., service] => {
            let tag = match tags {
                [] => None,
                [one] => Some(Cow::Borrowed(*one)),
                many => Some(Cow::Owned(many.join("."))),
            };
            Lookup::Service {
                service,
                tag,
                datacenter,
            }
        }
    }
}

enum Locality<'a> {
    Local,
    Datacenter(&'a str),
    Unsupported,
    Invalid,
}

/// The suffix right of the lookup kind: nothing, `<dc>`, `<dc>.dc`, or the
/// peering / sameness-group / Enterprise forms cairn does not serve.
fn locality<'a>(suffix: &[&'a str]) -> Locality<'a> {
    match suffix {
        [] => Locality::Local,
        [dc] => Locality::Datacenter(dc),
        [dc, "dc"] => Locality::Datacenter(dc),
        [_, "peer" | "sg" | "ns" | "ap"] => Locality::Unsupported,
        [_, a, _, b]
            if ["dc", "peer", "sg", "ns", "ap"].contains(a)
                && ["dc", "peer", "sg", "ns", "ap"].contains(b) =>
        {
            Locality::Unsupported
        }
        _ => Locality::Invalid,
    }
}

fn join<'a>(parts: &[&'a str]) -> Cow<'a, str> {
    match parts {
        [one] => Cow::Borrowed(*one),
        many => Cow::Owned(many.join(".")),
    }
}

/// `0a000001` -> 10.0.0.1; 32 hex digits -> an IPv6 address.
pub fn parse_addr(hex: &str) -> Option<IpAddr> {
    fn nibble(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = hex.as_bytes();
    let mut out = [0u8; 16];
    if bytes.len() != 8 && bytes.len() != 32 {
        return None;
    }
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(if bytes.len() == 8 {
        IpAddr::V4(Ipv4Addr::new(out[0], out[1], out[2], out[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(out))
    })
}

/// The `.addr` label for an address: 8 or 32 lower-case hex digits.
pub fn addr_label(ip: IpAddr) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(32);
    match ip {
        IpAddr::V4(v4) => v4.octets().iter().for_each(|b| {
            let _ = write!(s, "{b:02x}");
        }),
        IpAddr::V6(v6) => v6.octets().iter().for_each(|b| {
            let _ = write!(s, "{b:02x}");
        }),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(s: &'static str) -> Vec<&'static str> {
        s.trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
            .collect()
    }

    fn domains() -> Vec<Vec<String>> {
        vec![
            vec!["consul".into()],
            vec!["cairn".into(), "example".into()],
        ]
    }

    fn lookup(name: &'static str, srv: bool) -> Lookup<'static> {
        match zone(&labels(name), &domains()) {
            Zone::Catalog { labels, .. } => parse(labels, srv),
            other => panic!("{name} not in the catalog zone: {other:?}"),
        }
    }

    fn svc(
        service: &'static str,
        tag: Option<&'static str>,
        dc: Option<&'static str>,
    ) -> Lookup<'static> {
        Lookup::Service {
            service,
            tag: tag.map(Cow::Borrowed),
            datacenter: dc,
        }
    }

    #[test]
    fn zones() {
        let d = domains();
        assert_eq!(
            zone(&labels("web.service.consul."), &d),
            Zone::Catalog {
                domain: 0,
                labels: &["web", "service"]
            }
        );
        assert_eq!(
            zone(&labels("web.service.cairn.example."), &d),
            Zone::Catalog {
                domain: 1,
                labels: &["web", "service"]
            }
        );
        assert_eq!(
            zone(&labels("consul."), &d),
            Zone::Catalog {
                domain: 0,
                labels: &[]
            }
        );
        assert_eq!(zone(&labels("1.0.0.10.in-addr.arpa."), &d), Zone::Reverse);
        assert_eq!(zone(&labels("example.com."), &d), Zone::Foreign);
        assert_eq!(zone(&labels("consulx."), &d), Zone::Foreign);
        assert_eq!(zone(&labels("."), &d), Zone::Foreign);
        // The longer domain wins when both match.
        let nested = vec![vec!["consul".into()], vec!["dc.consul".into()]];
        let nested: Vec<Vec<String>> = nested
            .into_iter()
            .map(|d: Vec<String>| d[0].split('.').map(String::from).collect())
            .collect();
        assert_eq!(
            zone(&labels("web.service.dc.consul."), &nested),
            Zone::Catalog {
                domain: 1,
                labels: &["web", "service"]
            }
        );
    }

    #[test]
    fn service_forms() {
        assert_eq!(lookup("web.service.consul", false), svc("web", None, None));
        assert_eq!(
            lookup("v1.web.service.consul", false),
            svc("web", Some("v1"), None)
        );
        assert_eq!(
            lookup("a.b.web.service.consul", false),
            svc("web", Some("a.b"), None)
        );
        assert_eq!(
            lookup("web.service.dc1.consul", false),
            svc("web", None, Some("dc1"))
        );
        assert_eq!(
            lookup("web.service.dc1.dc.consul", false),
            svc("web", None, Some("dc1"))
        );
        assert_eq!(
            lookup("v1.web.service.dc2.dc.cairn.example", false),
            svc("web", Some("v1"), Some("dc2"))
        );
        assert_eq!(lookup("service.consul", false), Lookup::Invalid);
        assert_eq!(lookup("web.service.a.b.c.consul", false), Lookup::Invalid);
        assert_eq!(
            lookup("web.service.p1.peer.consul", false),
            Lookup::Unsupported
        );
    }

    #[test]
    fn rfc2782_forms() {
        assert_eq!(
            lookup("_web._tcp.service.consul", false),
            svc("web", None, None)
        );
        assert_eq!(
            lookup("_web._v1.service.consul", false),
            svc("web", Some("v1"), None)
        );
        assert_eq!(
            lookup("_web._tcp.service.dc1.consul", false),
            svc("web", None, Some("dc1"))
        );
        // Without `.service` only for SRV questions.
        assert_eq!(lookup("_web._tcp.consul", true), svc("web", None, None));
        assert_eq!(
            lookup("_web._v1.dc1.consul", true),
            svc("web", Some("v1"), Some("dc1"))
        );
        assert_eq!(lookup("_web._tcp.consul", false), Lookup::Invalid);
        // One underscore label alone is a plain service name.
        assert_eq!(
            lookup("_web.service.consul", false),
            svc("_web", None, None)
        );
    }

    #[test]
    fn node_and_addr_forms() {
        assert_eq!(
            lookup("n1.node.consul", false),
            Lookup::Node {
                node: "n1".into(),
                datacenter: None
            }
        );
        assert_eq!(
            lookup("a.b.node.dc1.consul", false),
            Lookup::Node {
                node: "a.b".into(),
                datacenter: Some("dc1")
            }
        );
        assert_eq!(
            lookup("n1.node.dc1.dc.consul", false),
            Lookup::Node {
                node: "n1".into(),
                datacenter: Some("dc1")
            }
        );
        assert_eq!(lookup("node.consul", false), Lookup::Invalid);
        assert_eq!(
            lookup("7f000001.addr.consul", false),
            Lookup::Addr("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            lookup("7f000001.addr.dc1.consul", false),
            Lookup::Addr("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            lookup("20010db8000000000000000000000001.addr.dc1.consul", false),
            Lookup::Addr("2001:db8::1".parse().unwrap())
        );
        assert_eq!(lookup("7f00001.addr.consul", false), Lookup::Invalid);
        assert_eq!(lookup("zz000001.addr.consul", false), Lookup::Invalid);
        assert_eq!(lookup("a.b.addr.consul", false), Lookup::Invalid);
    }

    #[test]
    fn other_forms() {
        assert_eq!(lookup("consul", false), Lookup::Apex);
        assert_eq!(lookup("foo.consul", false), Lookup::Invalid);
        assert_eq!(lookup("web.connect.consul", false), Lookup::Unsupported);
        assert_eq!(
            lookup("q.query.consul", false),
            Lookup::Query {
                name: "q".into(),
                datacenter: None
            }
        );
        assert_eq!(
            lookup("_geo.db._tcp.query.dc1.consul", true),
            Lookup::Query {
                name: "_geo.db._tcp".into(),
                datacenter: Some("dc1")
            }
        );
        assert_eq!(
            lookup("_db._tcp.query.dc1.consul", true),
            Lookup::Query {
                name: "db".into(),
                datacenter: Some("dc1")
            }
        );
        assert_eq!(lookup("query.consul", false), Lookup::Invalid);
    }

    #[test]
    fn addr_labels_round_trip() {
        for ip in ["10.0.0.1", "255.1.0.9", "2001:db8::1", "::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(parse_addr(&addr_label(ip)), Some(ip));
        }
        assert_eq!(addr_label("10.0.0.1".parse().unwrap()), "0a000001");
    }
}
