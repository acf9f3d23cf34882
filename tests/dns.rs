//! The DNS interface against the real binary: registrations over HTTP,
//! questions with `dig` (and raw sockets for malformed traffic).

mod common;

use common::TestAgent;
use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// One resource record line of dig's output.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rr {
    name: String,
    ttl: u32,
    rtype: String,
    data: String,
}

/// dig's full output, split into what the tests look at.
#[derive(Debug)]
struct Dig {
    raw: String,
    status: String,
    flags: Vec<String>,
    edns_udp: Option<u32>,
    answer: Vec<Rr>,
    authority: Vec<Rr>,
    additional: Vec<Rr>,
}

impl Dig {
    fn parse(raw: String) -> Dig {
        let mut d = Dig {
            status: String::new(),
            flags: vec![],
            edns_udp: None,
            answer: vec![],
            authority: vec![],
            additional: vec![],
            raw: String::new(),
        };
        let mut section = "";
        for line in raw.lines() {
            if let Some(rest) = line.split("status: ").nth(1) {
                d.status = rest.split(',').next().unwrap_or("").to_string();
            }
            if let Some(rest) = line.strip_prefix(";; flags: ") {
                d.flags = rest
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .split_whitespace()
                    .map(String::from)
                    .collect();
            }
            if let Some(rest) = line.split("udp: ").nth(1) {
                d.edns_udp = rest.trim().parse().ok();
            }
            if line.starts_with(";; ANSWER SECTION") {
                section = "answer";
                continue;
            }
            if line.starts_with(";; AUTHORITY SECTION") {
                section = "authority";
                continue;
            }
            if line.starts_with(";; ADDITIONAL SECTION") {
                section = "additional";
                continue;
            }
            if line.trim().is_empty() || line.starts_with(';') {
                if line.trim().is_empty() {
                    section = "";
                }
                continue;
            }
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 5 {
                continue;
            }
            let rr = Rr {
                name: f[0].to_string(),
                ttl: f[1].parse().unwrap_or(u32::MAX),
                rtype: f[3].to_string(),
                data: f[4..].join(" "),
            };
            match section {
                "answer" => d.answer.push(rr),
                "authority" => d.authority.push(rr),
                "additional" => d.additional.push(rr),
                _ => {}
            }
        }
        d.raw = raw;
        d
    }

    fn data(&self, rtype: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .answer
            .iter()
            .filter(|r| r.rtype == rtype)
            .map(|r| r.data.clone())
            .collect();
        v.sort();
        v
    }

    fn has_soa_authority(&self) -> bool {
        self.authority.iter().any(|r| r.rtype == "SOA")
    }
}

fn ask(agent: &TestAgent, args: &[&str]) -> Dig {
    let out = agent.dig(args);
    let d = Dig::parse(out);
    assert!(
        !d.status.is_empty(),
        "no answer from dig {args:?}:\n{}",
        d.raw
    );
    d
}

/// Sends a hand-built query (id 0x1234, one question, class IN) over UDP
/// and returns the raw reply.
fn raw_udp_query(port: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = vec![0x12, 0x34, 0x00, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0];
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    udp.send_to(&q, ("127.0.0.1", port)).unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) = udp.recv_from(&mut buf).expect("no reply");
    buf.truncate(n);
    assert_eq!(&buf[..2], &[0x12, 0x34]);
    buf
}

fn register(agent: &TestAgent, body: &str) {
    let r = agent.put("/v1/catalog/register", body);
    assert_eq!(r.status, 200, "register {body}: {}", r.body);
}

/// Registers `svc` on node `node` at `addr` with a passing node check.
fn register_instance(
    agent: &TestAgent,
    node: &str,
    addr: &str,
    svc: &str,
    port: u16,
    tags: &[&str],
) {
    let tags: Vec<String> = tags.iter().map(|t| format!("{t:?}")).collect();
    register(
        agent,
        &format!(
            r#"{{"Node":"{node}","Address":"{addr}","Service":{{"Service":"{svc}","ID":"{svc}-{node}-{port}","Port":{port},"Tags":[{}]}},"Checks":[{{"CheckID":"serfHealth","Name":"Serf Health Status","Status":"passing"}}]}}"#,
            tags.join(",")
        ),
    );
}

/// Five instances of `big` (10.1.0.1-5) and three of `web` with tags.
fn populate(agent: &TestAgent) {
    for i in 1..=5 {
        register_instance(
            agent,
            &format!("big{i}"),
            &format!("10.1.0.{i}"),
            "big",
            9000,
            &[],
        );
    }
    register_instance(agent, "web1", "10.0.0.1", "web", 80, &["v1", "primary"]);
    register_instance(agent, "web2", "10.0.0.2", "web", 81, &["v2"]);
    register_instance(agent, "web3", "10.0.0.3", "web", 82, &["v1"]);
}

#[test]
fn srv_a_and_aaaa_lookups() {
    let agent = TestAgent::dev();
    populate(&agent);
    register(
        &agent,
        r#"{"Node":"v6node","Address":"2001:db8::10","Service":{"Service":"six","ID":"six1","Port":443,"Address":"2001:db8::6"}}"#,
    );

    // SRV: one record per instance, node targets, their A in additional.
    let d = ask(&agent, &["web.service.consul", "SRV"]);
    assert_eq!(d.status, "NOERROR");
    assert_eq!(
        d.data("SRV"),
        [
            "1 1 80 web1.node.dc1.consul.",
            "1 1 81 web2.node.dc1.consul.",
            "1 1 82 web3.node.dc1.consul."
        ]
    );
    let mut extra: Vec<String> = d
        .additional
        .iter()
        .filter(|r| r.rtype == "A")
        .map(|r| format!("{} {}", r.name, r.data))
        .collect();
    extra.sort();
    assert_eq!(
        extra,
        [
            "web1.node.dc1.consul. 10.0.0.1",
            "web2.node.dc1.consul. 10.0.0.2",
            "web3.node.dc1.consul. 10.0.0.3"
        ]
    );

    let d = ask(&agent, &["web.service.consul", "A"]);
    assert_eq!(d.data("A"), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    assert!(d.answer.iter().all(|r| r.name == "web.service.consul."));

    // A service with its own IPv6 address: AAAA, and an .addr SRV target.
    let d = ask(&agent, &["six.service.consul", "AAAA"]);
    assert_eq!(d.data("AAAA"), ["2001:db8::6"]);
    let d = ask(&agent, &["six.service.consul", "SRV"]);
    assert_eq!(
        d.data("SRV"),
        ["1 1 443 20010db8000000000000000000000006.addr.dc1.consul."]
    );
    assert!(d
        .additional
        .iter()
        .any(|r| r.rtype == "AAAA" && r.data == "2001:db8::6"));

    // The .addr name resolves to the address it encodes.
    let d = ask(
        &agent,
        &["20010db8000000000000000000000006.addr.dc1.consul", "AAAA"],
    );
    assert_eq!(d.data("AAAA"), ["2001:db8::6"]);
    let d = ask(&agent, &["0a000001.addr.consul", "A"]);
    assert_eq!(d.data("A"), ["10.0.0.1"]);
    assert_eq!(
        ask(&agent, &["0a00001.addr.consul", "A"]).status,
        "NXDOMAIN"
    );
}

#[test]
fn tags_rfc2782_and_datacenter_suffixes() {
    let agent = TestAgent::dev();
    populate(&agent);
    let count = |name: &str, t: &str| ask(&agent, &[name, t]).answer.len();
    assert_eq!(count("v1.web.service.consul", "A"), 2);
    assert_eq!(count("V1.WEB.service.consul", "A"), 2);
    assert_eq!(count("primary.web.service.consul", "SRV"), 1);
    assert_eq!(
        ask(&agent, &["v9.web.service.consul", "A"]).status,
        "NXDOMAIN"
    );
    // RFC 2782, with and without `.service` (the latter only for SRV).
    assert_eq!(count("_web._tcp.service.consul", "SRV"), 3);
    assert_eq!(count("_web._v1.service.consul", "SRV"), 2);
    assert_eq!(count("_web._tcp.consul", "SRV"), 3);
    assert_eq!(count("_web._v2.dc1.consul", "SRV"), 1);
    assert_eq!(ask(&agent, &["_web._tcp.consul", "A"]).status, "NXDOMAIN");
    // Datacenter suffixes: `<dc>` and `<dc>.dc`; another datacenter is unknown.
    assert_eq!(count("web.service.dc1.consul", "A"), 3);
    assert_eq!(count("web.service.dc1.dc.consul", "A"), 3);
    assert_eq!(count("web1.node.dc1.consul", "A"), 1);
    assert_eq!(count("web1.node.dc1.dc.consul", "A"), 1);
    let d = ask(&agent, &["web.service.dc2.consul", "A"]);
    assert_eq!(d.status, "NXDOMAIN");
    assert!(d.has_soa_authority());
}

#[test]
fn node_lookups_with_meta_txt() {
    let agent = TestAgent::dev();
    register(
        &agent,
        r#"{"Node":"db-1","Address":"10.2.0.1","NodeMeta":{"rack":"r1","rfc1035-raw":"plain"}}"#,
    );
    let d = ask(&agent, &["db-1.node.consul", "A"]);
    assert_eq!(d.data("A"), ["10.2.0.1"]);
    // Node meta rides along in additional.
    let mut meta: Vec<&str> = d
        .additional
        .iter()
        .filter(|r| r.rtype == "TXT")
        .map(|r| r.data.as_str())
        .collect();
    meta.sort();
    assert_eq!(meta, ["\"plain\"", "\"rack=r1\""]);
    let d = ask(&agent, &["db-1.node.consul", "TXT"]);
    assert_eq!(d.data("TXT"), ["\"plain\"", "\"rack=r1\""]);
    let d = ask(&agent, &["db-1.node.dc1.consul", "ANY"]);
    assert_eq!(d.data("A"), ["10.2.0.1"]);
    assert_eq!(d.data("TXT").len(), 2);
    let d = ask(&agent, &["nope.node.consul", "A"]);
    assert_eq!(d.status, "NXDOMAIN");
    assert!(d.has_soa_authority());
    // The agent's own node, with the meta every agent registers.
    let d = ask(&agent, &["node1.node.consul", "TXT"]);
    assert!(d
        .data("TXT")
        .iter()
        .any(|t| t.starts_with("\"consul-version=")));
    // Reverse lookup of a node address.
    let d = ask(&agent, &["-x", "10.2.0.1"]);
    assert_eq!(d.data("PTR"), ["db-1.node.dc1.consul."]);
}

#[test]
fn soa_ns_and_negative_answers() {
    let agent = TestAgent::dev();
    populate(&agent);
    // SOA at the apex, with NS records (the servers) in authority.
    let d = ask(&agent, &["consul", "SOA"]);
    assert_eq!(d.status, "NOERROR");
    let soa = d.data("SOA");
    assert_eq!(soa.len(), 1);
    let f: Vec<&str> = soa[0].split_whitespace().collect();
    assert_eq!(&f[..2], ["ns.consul.", "hostmaster.consul."]);
    assert_eq!(&f[3..], ["3600", "600", "86400", "0"]);
    let serial: u64 = f[2].parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        serial.abs_diff(now) < 60,
        "serial {serial} is not unix time"
    );
    assert!(d
        .authority
        .iter()
        .any(|r| r.rtype == "NS" && r.data == "node1.node.dc1.consul."));
    let d = ask(&agent, &["consul", "NS"]);
    assert_eq!(d.data("NS"), ["node1.node.dc1.consul."]);
    assert!(d
        .additional
        .iter()
        .any(|r| r.name == "node1.node.dc1.consul." && r.rtype == "A"));

    // Unknown service: NXDOMAIN with the SOA for negative caching.
    let d = ask(&agent, &["missing.service.consul", "A"]);
    assert_eq!(d.status, "NXDOMAIN");
    assert!(d.answer.is_empty());
    assert!(d.has_soa_authority());
    assert_eq!(ask(&agent, &["garbage.consul", "A"]).status, "NXDOMAIN");

    // Instances exist but have no record of the type: NODATA.
    let d = ask(&agent, &["web.service.consul", "AAAA"]);
    assert_eq!(d.status, "NOERROR");
    assert!(d.answer.is_empty());
    assert!(d.has_soa_authority());

    // Every answer from the zone is authoritative.
    for name in ["web.service.consul", "missing.service.consul", "consul"] {
        let d = ask(&agent, &[name, "A"]);
        assert!(d.flags.contains(&"aa".to_string()), "{name}: {:?}", d.flags);
    }
    // Not our zone: refused, not authoritative. Zone transfers: not implemented.
    let d = ask(&agent, &["example.com", "A"]);
    assert_eq!(d.status, "REFUSED");
    assert!(!d.flags.contains(&"aa".to_string()));
    let reply = raw_udp_query(agent.ports.dns, "consul", 252);
    assert_eq!(reply[3] & 0x0f, 4, "AXFR should be NOTIMP");
    assert_ne!(reply[2] & 0x04, 0, "aa");
}

#[test]
fn critical_instances_are_left_out() {
    let agent = TestAgent::dev();
    // The only instance has a critical service check: NXDOMAIN.
    register(
        &agent,
        r#"{"Node":"n1","Address":"10.3.0.1","Service":{"Service":"api","ID":"api1","Port":80},"Checks":[{"CheckID":"c1","Name":"c","Status":"critical","ServiceID":"api1"}]}"#,
    );
    let d = ask(&agent, &["api.service.consul", "A"]);
    assert_eq!(d.status, "NXDOMAIN", "{}", d.raw);
    assert!(d.has_soa_authority());
    // A healthy instance elsewhere is answered; a critical node check
    // (serfHealth) hides the node's instances.
    register_instance(&agent, "n2", "10.3.0.2", "api", 80, &[]);
    register(
        &agent,
        r#"{"Node":"n3","Address":"10.3.0.3","Service":{"Service":"api","ID":"api3","Port":80},"Checks":[{"CheckID":"serfHealth","Name":"serf","Status":"critical"}]}"#,
    );
    register(
        &agent,
        r#"{"Node":"n4","Address":"10.3.0.4","Service":{"Service":"api","ID":"api4","Port":80},"Checks":[{"CheckID":"w","Name":"w","Status":"warning","ServiceID":"api4"}]}"#,
    );
    let d = ask(&agent, &["api.service.consul", "A"]);
    // Warning instances are answered unless only_passing is set.
    assert_eq!(d.data("A"), ["10.3.0.2", "10.3.0.4"]);
    // Warning weight applies to SRV.
    register(
        &agent,
        r#"{"Node":"n5","Address":"10.3.0.5","Service":{"Service":"weighted","ID":"w5","Port":80,"Weights":{"Passing":10,"Warning":3}},"Checks":[{"CheckID":"w","Name":"w","Status":"warning","ServiceID":"w5"}]}"#,
    );
    assert_eq!(
        ask(&agent, &["weighted.service.consul", "SRV"]).data("SRV"),
        ["1 3 80 n5.node.dc1.consul."]
    );
}

#[test]
fn udp_truncation_edns_and_tcp() {
    let agent = TestAgent::dev();
    populate(&agent);
    // Plain UDP: at most udp_answer_limit (3) answers, no TC by default.
    let d = ask(&agent, &["+noedns", "big.service.consul", "A"]);
    assert_eq!(d.answer.len(), 3, "{}", d.raw);
    assert!(!d.flags.contains(&"tc".to_string()));
    assert_eq!(d.edns_udp, None);
    let d = ask(&agent, &["+noedns", "big.service.consul", "SRV"]);
    assert_eq!(d.answer.len(), 3);
    assert_eq!(d.additional.iter().filter(|r| r.rtype == "A").count(), 3);
    // EDNS: everything that fits the advertised size, and the OPT echoed.
    let d = ask(&agent, &["+bufsize=4096", "big.service.consul", "A"]);
    assert_eq!(d.answer.len(), 5);
    assert_eq!(d.edns_udp, Some(4096));
    let d = ask(&agent, &["+bufsize=1232", "big.service.consul", "SRV"]);
    assert_eq!(d.answer.len(), 5);
    assert_eq!(d.edns_udp, Some(1232));
    // TCP: everything.
    let d = ask(&agent, &["+tcp", "+noedns", "big.service.consul", "A"]);
    assert_eq!(d.answer.len(), 5);
    assert!(d.raw.contains("(TCP)"));
    // EDNS Client Subnet is echoed with a global scope.
    let d = ask(
        &agent,
        &["+subnet=10.20.30.0/24", "big.service.consul", "A"],
    );
    assert!(
        d.raw.contains("CLIENT-SUBNET: 10.20.30.0/24/0"),
        "{}",
        d.raw
    );
    // EDNS version 1 is answered BADVERS.
    let d = Dig::parse(agent.dig(&["+edns=1", "+noednsnegotiation", "big.service.consul", "A"]));
    assert_eq!(d.status, "BADVERS", "{}", d.raw);
}

#[test]
fn answers_are_shuffled() {
    let agent = TestAgent::dev();
    populate(&agent);
    let mut orders = HashSet::new();
    for _ in 0..20 {
        orders.insert(agent.dig(&["+short", "+bufsize=4096", "big.service.consul", "A"]));
    }
    assert!(orders.len() > 1, "always the same order: {orders:?}");
    assert!(orders.iter().all(|o| o.lines().count() == 5));
}

#[test]
fn registration_is_visible_to_the_next_query() {
    let agent = TestAgent::dev();
    for i in 1..=5 {
        register_instance(
            &agent,
            &format!("f{i}"),
            &format!("10.9.0.{i}"),
            "fresh",
            80,
            &[],
        );
        let d = ask(&agent, &["+bufsize=4096", "fresh.service.consul", "A"]);
        assert_eq!(d.answer.len(), i, "after registration {i}: {}", d.raw);
    }
    let r = agent.put("/v1/catalog/deregister", r#"{"Node":"f1"}"#);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        ask(&agent, &["+bufsize=4096", "fresh.service.consul", "A"])
            .answer
            .len(),
        4
    );
}

#[test]
fn dns_config_from_a_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dns.json");
    std::fs::write(
        &path,
        r#"{"dns_config":{"node_ttl":"30s","service_ttl":{"*":"5s","big*":"10s"},"only_passing":true,"a_record_limit":4,"udp_answer_limit":2,"enable_truncate":true,"soa":{"min_ttl":7}}}"#,
    )
    .unwrap();
    let agent = TestAgent::dev_with(&[&format!("-config-file={}", path.display())]);
    populate(&agent);
    register(
        &agent,
        r#"{"Node":"warn1","Address":"10.4.0.1","Service":{"Service":"web","ID":"web-warn","Port":80},"Checks":[{"CheckID":"w","Name":"w","Status":"warning","ServiceID":"web-warn"}]}"#,
    );
    // TTLs: node_ttl for nodes, service_ttl by exact/prefix/wildcard.
    let d = ask(&agent, &["web1.node.consul", "A"]);
    assert_eq!(d.answer[0].ttl, 30);
    let d = ask(&agent, &["+bufsize=4096", "big.service.consul", "A"]);
    assert!(d.answer.iter().all(|r| r.ttl == 10));
    // a_record_limit caps A answers even when more would fit.
    assert_eq!(d.answer.len(), 4);
    let d = ask(&agent, &["+bufsize=4096", "web.service.consul", "A"]);
    assert!(d.answer.iter().all(|r| r.ttl == 5));
    // only_passing drops the warning instance.
    assert_eq!(d.data("A"), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
    // udp_answer_limit with enable_truncate: 2 answers and TC...
    let d = ask(&agent, &["+noedns", "+ignore", "big.service.consul", "SRV"]);
    assert_eq!(d.answer.len(), 2, "{}", d.raw);
    assert!(d.flags.contains(&"tc".to_string()), "{:?}", d.flags);
    // ...so dig retries over TCP and gets all of them.
    let d = ask(&agent, &["+noedns", "big.service.consul", "SRV"]);
    assert_eq!(d.answer.len(), 5, "{}", d.raw);
    // soa.min_ttl is the SOA's TTL and minimum.
    let d = ask(&agent, &["missing.service.consul", "A"]);
    let soa = d.authority.iter().find(|r| r.rtype == "SOA").unwrap();
    assert_eq!(soa.ttl, 7);
    assert!(soa.data.ends_with(" 7"));
}

#[test]
fn malformed_packets_do_not_stop_the_server() {
    let agent = TestAgent::dev();
    populate(&agent);
    let addr = ("127.0.0.1", agent.ports.dns);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let header_only_bad_count = [
        0x12, 0x34, 0x01, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff,
    ];
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        b"not a dns packet at all".to_vec(),
        header_only_bad_count.to_vec(),
        vec![0xff; 600],
        (0..=255u8).collect(),
    ];
    for packet in &junk {
        udp.send_to(packet, addr).unwrap();
        let mut buf = [0u8; 1024];
        // Either no reply or a FORMERR-ish one; never a crash.
        if let Ok((n, _)) = udp.recv_from(&mut buf) {
            assert!(n >= 12);
        }
    }
    // A TCP frame that announces more bytes than it sends.
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.write_all(&[0x00, 0x40, 0x12, 0x34, 0x01]).unwrap();
    // The server keeps answering meanwhile, over UDP and TCP.
    assert_eq!(ask(&agent, &["web.service.consul", "A"]).answer.len(), 3);
    assert_eq!(
        ask(&agent, &["+tcp", "web.service.consul", "A"])
            .answer
            .len(),
        3
    );
    // And closes the stuck connection after its idle timeout.
    tcp.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let n = tcp.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "expected the connection to be closed");
    assert!(started.elapsed() < Duration::from_secs(12));
    assert_eq!(ask(&agent, &["web.service.consul", "SRV"]).answer.len(), 3);
}

#[test]
fn alt_domain_answers_in_the_domain_asked() {
    let agent = TestAgent::dev_with(&["-alt-domain=cairn.test"]);
    populate(&agent);
    let d = ask(&agent, &["web.service.cairn.test", "SRV"]);
    assert_eq!(d.answer.len(), 3);
    assert!(d
        .answer
        .iter()
        .all(|r| r.data.ends_with(".node.dc1.cairn.test.")));
    let d = ask(&agent, &["missing.service.cairn.test", "A"]);
    assert_eq!(d.status, "NXDOMAIN");
    assert!(d
        .authority
        .iter()
        .any(|r| r.rtype == "SOA" && r.name == "cairn.test."));
    assert_eq!(ask(&agent, &["web.service.consul", "A"]).answer.len(), 3);
}

#[test]
fn foreign_names_go_to_the_recursors() {
    // Another agent serving `upstream.` stands in for an upstream resolver.
    let upstream = TestAgent::dev_with(&["-domain=upstream"]);
    let recursor = format!("-recursor=127.0.0.1:{}", upstream.ports.dns);
    let agent = TestAgent::dev_with(&[&recursor]);
    let d = ask(&agent, &["node1.node.upstream", "A"]);
    assert_eq!(d.status, "NOERROR", "{}", d.raw);
    assert_eq!(d.data("A"), ["127.0.0.1"]);
    assert!(d.flags.contains(&"ra".to_string()), "{:?}", d.flags);
    let d = ask(&agent, &["+tcp", "node1.node.upstream", "A"]);
    assert_eq!(d.data("A"), ["127.0.0.1"]);
    let d = ask(&agent, &["nope.node.upstream", "A"]);
    assert_eq!(d.status, "NXDOMAIN");
    // The agent's own domain is still answered locally.
    let d = ask(&agent, &["node1.node.consul", "A"]);
    assert_eq!(d.data("A"), ["127.0.0.1"]);
    assert!(d.flags.contains(&"aa".to_string()));

    // Every recursor failing is SERVFAIL.
    let dead = format!("-recursor=127.0.0.1:{}", common::free_port());
    let agent = TestAgent::dev_with(&[&dead]);
    assert_eq!(ask(&agent, &["example.com", "A"]).status, "SERVFAIL");
}

#[test]
fn agent_checks_and_maintenance_drive_dns() {
    let agent = TestAgent::dev();
    // A TTL check starts critical: the instance is not served until it passes.
    let r = agent.put(
        "/v1/agent/service/register",
        r#"{"Name":"api","ID":"api1","Port":8080,"Check":{"CheckID":"api-ttl","TTL":"30s"}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        ask(&agent, &["api.service.consul", "SRV"]).status,
        "NXDOMAIN"
    );
    let r = agent.put("/v1/agent/check/pass/api-ttl", "");
    assert_eq!(r.status, 200, "{}", r.body);
    let d = ask(&agent, &["api.service.consul", "SRV"]);
    assert_eq!(d.data("SRV"), ["1 1 8080 node1.node.dc1.consul."]);
    // Service maintenance hides it; ending maintenance brings it back.
    let r = agent.put("/v1/agent/service/maintenance/api1?enable=true", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        ask(&agent, &["api.service.consul", "SRV"]).status,
        "NXDOMAIN"
    );
    agent.put("/v1/agent/service/maintenance/api1?enable=false", "");
    assert_eq!(ask(&agent, &["api.service.consul", "SRV"]).answer.len(), 1);
    // Node maintenance hides every service on the node, the consul service too.
    let r = agent.put("/v1/agent/maintenance?enable=true", "");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(ask(&agent, &["api.service.consul", "A"]).status, "NXDOMAIN");
    assert_eq!(
        ask(&agent, &["consul.service.consul", "A"]).status,
        "NXDOMAIN"
    );
    // Node lookups are not health-filtered.
    assert_eq!(
        ask(&agent, &["node1.node.consul", "A"]).data("A"),
        ["127.0.0.1"]
    );
}

#[test]
fn large_answers_fit_the_transport() {
    let agent = TestAgent::dev();
    for i in 0..300u32 {
        register_instance(
            &agent,
            &format!("m{i}"),
            &format!("10.5.{}.{}", i / 200, i % 200 + 1),
            "many",
            7000,
            &[],
        );
    }
    // TCP carries every instance (well within 64 KiB).
    let d = ask(&agent, &["+tcp", "many.service.consul", "A"]);
    assert_eq!(d.answer.len(), 300, "{}", d.raw);
    let d = ask(&agent, &["+tcp", "many.service.consul", "SRV"]);
    assert_eq!(d.answer.len(), 300);
    assert_eq!(d.additional.iter().filter(|r| r.rtype == "A").count(), 300);
    // UDP with EDNS: as many as fit the advertised size, additional in step,
    // no TC by default.
    for (bufsize, kind, subnet) in [
        ("+bufsize=1232", "A", "+nosubnet"),
        ("+bufsize=1232", "SRV", "+nosubnet"),
        ("+bufsize=4096", "SRV", "+nosubnet"),
        ("+bufsize=1232", "A", "+subnet=10.20.30.0/24"),
        ("+bufsize=1232", "SRV", "+subnet=2001:db8::/56"),
    ] {
        // With an EDNS Client Subnet option the echoed option counts too.
        let d = ask(
            &agent,
            &[bufsize, "+ignore", subnet, "many.service.consul", kind],
        );
        let limit: usize = bufsize.trim_start_matches("+bufsize=").parse().unwrap();
        let size: usize = d
            .raw
            .lines()
            .find_map(|l| l.strip_prefix(";; MSG SIZE  rcvd: "))
            .and_then(|s| s.trim().parse().ok())
            .unwrap();
        assert!(size <= limit, "{size} > {limit}");
        assert!(
            d.answer.len() > 10 && d.answer.len() < 300,
            "{kind} {bufsize}: {}",
            d.answer.len()
        );
        assert!(!d.flags.contains(&"tc".to_string()));
        if kind == "SRV" {
            let targets: HashSet<String> = d
                .answer
                .iter()
                .map(|r| r.data.split_whitespace().last().unwrap().to_string())
                .collect();
            let glue: HashSet<String> = d
                .additional
                .iter()
                .filter(|r| r.rtype == "A")
                .map(|r| r.name.clone())
                .collect();
            assert_eq!(
                targets, glue,
                "additional records must match the SRV targets kept"
            );
        }
    }
}

#[test]
fn static_zone_files_are_served_beside_the_catalog() {
    let zones = concat!(env!("CARGO_MANIFEST_DIR"), "/zones");
    let agent = TestAgent::dev_with(&[&format!("-zones-dir={zones}")]);
    let a = agent.dig(&["db.example.internal", "A"]);
    assert!(a.contains("NOERROR") && a.contains("10.20.0.10"), "{a}");
    assert!(a.contains(" aa"), "authoritative: {a}");
    let srv = agent.dig(&["+short", "_pg._tcp.example.internal", "SRV"]);
    assert_eq!(srv.trim(), "1 1 5432 db.example.internal.");
    let nx = agent.dig(&["nope.example.internal", "A"]);
    assert!(nx.contains("NXDOMAIN") && nx.contains("SOA"), "{nx}");
    let nodata = agent.dig(&["ns.example.internal", "TXT"]);
    assert!(
        nodata.contains("NOERROR") && nodata.contains("ANSWER: 0"),
        "{nodata}"
    );
    // The catalog's domain is unaffected.
    assert!(agent
        .dig(&["+short", "node1.node.consul", "A"])
        .contains("127.0.0.1"));
}
