//! Two datacenters against the real binary: dc1 with three servers and a
//! client agent, dc2 with one server and a client agent, joined over WAN
//! gossip. What a user sees: `members -wan`, the datacenter list, `?dc=`
//! reads, writes and blocking queries answered by the other datacenter
//! (from servers and client agents), catalog writes naming a datacenter in
//! the body, Consul's error for an unknown datacenter and for one whose
//! servers are all down (within a bounded time), DNS names in the other
//! datacenter, prepared-query failover to the other datacenter, a WAN partition that
//! leaves each datacenter working on its own and heals, and a server of
//! another cluster claiming dc1's name refused.

mod common;

use common::cluster::{wait_leader, Node, Partition};
use common::{eventually, BIN};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const DC1: u8 = 197;
const DC2: u8 = 198;
const ROGUE: u8 = 199;

fn wan_args(dc: &str, join: &str) -> Vec<String> {
    vec![
        format!("-datacenter={dc}"),
        format!("-retry-join-wan={join}"),
        "-retry-interval-wan=1s".into(),
    ]
}

fn server(net: u8, host: u8, expect: u32, dc: &str, wan_join: &str) -> Node {
    let extra = wan_args(dc, wan_join);
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    Node::server(net, host, expect, &[1], &extra)
}

fn client(net: u8, host: u8, dc: &str) -> Node {
    let dc = format!("-datacenter={dc}");
    Node::client(net, host, &[1], &[&dc])
}

fn wan_names(n: &Node) -> Vec<String> {
    let r = n.get("/v1/agent/members?wan=1").expect("members");
    let mut names: Vec<String> = r
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|m| m["Status"] == 1)
        .map(|m| m["Name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    names
}

fn datacenters(n: &Node) -> Value {
    n.get("/v1/catalog/datacenters")
        .expect("datacenters")
        .json()
}

struct Federation {
    dc1: Vec<Node>,
    c1: Node,
    dc2: Node,
    c2: Node,
}

impl Federation {
    fn start() -> Federation {
        let dc1_seed = format!("127.0.{DC1}.1");
        let mut dc1: Vec<Node> = (1..=3)
            .map(|h| server(DC1, h, 3, "dc1", &dc1_seed))
            .collect();
        let mut dc2 = server(DC2, 1, 1, "dc2", &dc1_seed);
        let mut c1 = client(DC1, 4, "dc1");
        let mut c2 = client(DC2, 4, "dc2");
        for n in dc1.iter_mut() {
            n.spawn();
        }
        dc2.spawn();
        c1.spawn();
        c2.spawn();
        let f = Federation { dc1, c1, dc2, c2 };
        let dc1_refs: Vec<&Node> = f.dc1.iter().collect();
        assert!(
            wait_leader(&dc1_refs, Duration::from_secs(30)).is_some(),
            "dc1 elected no leader; log:\n{}",
            f.dc1[0].log_text()
        );
        assert!(
            wait_leader(&[&f.dc2], Duration::from_secs(30)).is_some(),
            "dc2 elected no leader; log:\n{}",
            f.dc2.log_text()
        );
        let want = ["s1.dc1", "s1.dc2", "s2.dc1", "s3.dc1"];
        assert!(
            eventually(Duration::from_secs(30), || f
                .servers()
                .iter()
                .all(|n| wan_names(n) == want)),
            "the WAN pool did not form: {:?}; log:\n{}",
            f.servers().iter().map(|n| wan_names(n)).collect::<Vec<_>>(),
            f.dc2.log_text()
        );
        for c in [&f.c1, &f.c2] {
            assert!(
                eventually(Duration::from_secs(30), || c
                    .get("/v1/catalog/datacenters")
                    .is_ok_and(|r| r.status == 200)),
                "client {} found no server; log:\n{}",
                c.ip,
                c.log_text()
            );
        }
        f
    }

    fn servers(&self) -> Vec<&Node> {
        let mut v: Vec<&Node> = self.dc1.iter().collect();
        v.push(&self.dc2);
        v
    }
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run cairn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn two_datacenters_forward_to_each_other_and_survive_a_wan_partition() {
    let f = Federation::start();
    let (s1, c1, dc2, c2) = (&f.dc1[0], &f.c1, &f.dc2, &f.c2);

    // `cairn members -wan` on a server; a client agent is in no WAN pool.
    let addr = format!("-http-addr={}:8500", dc2.ip);
    let (code, out, err) = cli(&["members", "-wan", &addr]);
    assert_eq!(code, 0, "{err}");
    for name in ["s1.dc1", "s2.dc1", "s3.dc1", "s1.dc2"] {
        assert!(out.contains(name), "{name} missing from:\n{out}");
    }
    assert!(out.contains(&format!("{}:8302", dc2.ip)), "{out}");
    assert_eq!(c1.get("/v1/agent/members?wan=1").unwrap().json(), json!([]));

    // Every agent knows both datacenters, its own first.
    for n in [s1, c1] {
        assert_eq!(datacenters(n), json!(["dc1", "dc2"]), "on {}", n.name);
    }
    for n in [dc2, c2] {
        assert_eq!(datacenters(n), json!(["dc2", "dc1"]), "on {}", n.name);
    }
    let coords = s1.get("/v1/coordinate/datacenters").unwrap().json();
    let dcs: Vec<&str> = coords
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["Datacenter"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(dcs, ["dc1", "dc2"], "{coords}");

    // A service of dc2, read from dc1's client agent and server.
    let web = json!({"Name": "web", "ID": "web-1", "Port": 8080,
        "Check": {"TTL": "60s", "Status": "passing"}});
    let r = c2
        .put("/v1/agent/service/register", &web.to_string())
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    for n in [c1, s1] {
        assert!(
            eventually(Duration::from_secs(15), || {
                let r = n.get("/v1/health/service/web?dc=dc2&passing").unwrap();
                r.status == 200
                    && r.json()
                        .as_array()
                        .is_some_and(|a| a.len() == 1 && a[0]["Node"]["Node"] == "c4")
            }),
            "dc2's web never answered through {}: {:?}",
            n.name,
            n.get("/v1/health/service/web?dc=dc2&passing")
                .map(|r| r.body)
        );
    }
    let r = s1.get("/v1/health/service/web?dc=dc2").unwrap();
    assert!(r.index() > 1, "no X-Consul-Index from dc2");
    assert_eq!(r.json()[0]["Node"]["Datacenter"], "dc2", "{}", r.body);
    // Not in dc1's own catalog.
    assert_eq!(s1.get("/v1/health/service/web").unwrap().json(), json!([]));
    let local = s1.dig(&["web.service.consul", "SRV"]);
    assert!(local.contains("NXDOMAIN"), "{local}");

    // DNS: dc2's service and node from dc1's agents, with dc2 in the
    // names produced; dc1's own names are not there.
    for n in [c1, s1] {
        let srv = n.dig(&["web.service.dc2.consul", "SRV"]);
        assert!(
            srv.contains("8080 c4.node.dc2.consul."),
            "SRV through {}:\n{srv}",
            n.name
        );
        let a = n.dig(&["+short", "web.service.dc2.consul", "A"]);
        assert_eq!(a.trim(), c2.ip, "A through {}", n.name);
        let node = n.dig(&["+short", "c4.node.dc2.consul", "A"]);
        assert_eq!(node.trim(), c2.ip, "node through {}", n.name);
    }
    // A prepared query of dc2's, created through dc1 and answered over
    // DNS from dc1's client agent.
    let def = json!({"Name": "web-there", "Service": {"Service": "web"}, "DNS": {"TTL": "7s"}});
    let r = s1
        .request("POST", "/v1/query?dc=dc2", Some(&def.to_string()))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s1.get("/v1/query").unwrap().json(),
        json!([]),
        "created in dc1"
    );
    let srv = c1.dig(&["web-there.query.dc2.consul", "SRV"]);
    assert!(
        srv.contains(" 7\tIN\tSRV\t") && srv.contains(" 8080 c4.node.dc2.consul."),
        "query over DNS:\n{srv}"
    );
    let none = c1.dig(&["web-there.query.consul", "SRV"]);
    assert!(none.contains("NXDOMAIN"), "{none}");
    let nowhere = s1.dig(&["web.service.nowhere.consul", "SRV"]);
    assert!(nowhere.contains("NXDOMAIN"), "{nowhere}");

    // A prepared query fails over to dc2 when dc1's instance turns
    // critical, and says which datacenter answered.
    let local_web = json!({"Name": "web", "ID": "web-dc1", "Port": 9090,
        "Check": {"CheckID": "web-ttl", "TTL": "60s", "Status": "passing"}});
    let r = c1
        .put("/v1/agent/service/register", &local_web.to_string())
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let def = json!({"Name": "web-anywhere", "Service": {"Service": "web",
        "OnlyPassing": true, "Failover": {"NearestN": 1}}});
    let r = s1
        .request("POST", "/v1/query", Some(&def.to_string()))
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let served_by = |n: &Node| {
        let r = n.get("/v1/query/web-anywhere/execute").unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        (
            v["Datacenter"].as_str().unwrap_or_default().to_string(),
            v["Failovers"].as_u64().unwrap_or(99),
            v["Nodes"][0]["Service"]["Port"].as_u64().unwrap_or(0),
        )
    };
    assert!(
        eventually(Duration::from_secs(10), || served_by(c1)
            == ("dc1".into(), 0, 9090)),
        "dc1's own instance: {:?}",
        served_by(c1)
    );
    let r = c1.put("/v1/agent/check/fail/web-ttl", "").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    for n in [c1, s1] {
        assert!(
            eventually(Duration::from_secs(10), || served_by(n)
                == ("dc2".into(), 1, 8080)),
            "no failover to dc2 through {}: {:?}",
            n.name,
            served_by(n)
        );
    }
    // Over DNS as well, with dc2 in the names.
    let srv = c1.dig(&["web-anywhere.query.consul", "SRV"]);
    assert!(
        srv.contains(" 8080 c4.node.dc2.consul."),
        "no DNS failover to dc2:\n{srv}"
    );
    let r = c1.put("/v1/agent/check/pass/web-ttl", "").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        eventually(Duration::from_secs(10), || served_by(s1)
            == ("dc1".into(), 0, 9090)),
        "back to dc1: {:?}",
        served_by(s1)
    );
    let r = c1.put("/v1/agent/service/deregister/web-dc1", "").unwrap();
    assert_eq!(r.status, 200, "{}", r.body);

    // KV written through dc1 for dc2 lands in dc2 only.
    let r = c1.put("/v1/kv/where?dc=dc2", "dc2-value").unwrap();
    assert_eq!((r.status, r.body.trim()), (200, "true"));
    assert_eq!(dc2.get("/v1/kv/where?raw").unwrap().body, "dc2-value");
    assert_eq!(s1.get("/v1/kv/where").unwrap().status, 404);
    assert_eq!(s1.get("/v1/kv/where?dc=dc2&raw").unwrap().body, "dc2-value");

    // A catalog write naming dc2 in its body is made there.
    let reg = json!({"Datacenter": "dc2", "Node": "ext", "Address": "10.9.9.9",
        "Service": {"Service": "db", "Port": 5432}});
    let r = s1.put("/v1/catalog/register", &reg.to_string()).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(dc2.get("/v1/catalog/service/db").unwrap().json()[0]["Node"] == "ext");
    assert_eq!(s1.get("/v1/catalog/service/db").unwrap().json(), json!([]));

    // A blocking query for dc2 waits there and wakes on dc2's change.
    let idx = s1.get("/v1/kv/where?dc=dc2").unwrap().index();
    let writer = {
        let ip = dc2.ip.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(700));
            common::http_request(
                "PUT",
                &format!("http://{ip}:8500/v1/kv/where"),
                Some(b"changed"),
                &[],
            )
            .expect("write in dc2")
        })
    };
    let started = Instant::now();
    let r = c1
        .get(&format!("/v1/kv/where?dc=dc2&index={idx}&wait=20s"))
        .unwrap();
    let waited = started.elapsed();
    writer.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.index() > idx, "woke without a new index");
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(10),
        "blocked {waited:?}"
    );

    // An unknown datacenter: Consul's error, from servers and clients.
    for n in [s1, c1] {
        let r = n.get("/v1/catalog/nodes?dc=nowhere").unwrap();
        assert_eq!((r.status, r.body.trim()), (500, "No path to datacenter"));
    }

    // A WAN partition: each datacenter keeps reading and writing on its
    // own; requests across fail with an error in bounded time; it heals.
    {
        let mut pairs = Vec::new();
        for a in f.dc1.iter().map(|n| n.ip.as_str()).chain([c1.ip.as_str()]) {
            for b in [dc2.ip.as_str(), c2.ip.as_str()] {
                pairs.push((a, b));
            }
        }
        let _cut = Partition::cut(&pairs);
        let r = s1.put("/v1/kv/local", "dc1").unwrap();
        assert_eq!(r.status, 200, "dc1 write during partition: {}", r.body);
        let r = dc2.put("/v1/kv/local", "dc2").unwrap();
        assert_eq!(r.status, 200, "dc2 write during partition: {}", r.body);
        assert_eq!(c1.get("/v1/kv/local?raw").unwrap().body, "dc1");
        let started = Instant::now();
        let r = s1.get("/v1/kv/where?dc=dc2").unwrap();
        assert_eq!(r.status, 500, "{}", r.body);
        let dns = s1.dig(&["+tries=1", "+time=10", "web.service.dc2.consul", "SRV"]);
        assert!(
            dns.contains("SERVFAIL") || dns.contains("NXDOMAIN"),
            "dc2 unreachable over DNS:\n{dns}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "a request for the unreachable dc2 took {:?}",
            started.elapsed()
        );
        // Once WAN gossip has seen dc2's server fail: no path, at once.
        assert!(
            eventually(Duration::from_secs(30), || {
                let started = Instant::now();
                let r = s1.get("/v1/kv/where?dc=dc2").unwrap();
                r.status == 500
                    && r.body.trim() == "No path to datacenter"
                    && started.elapsed() < Duration::from_secs(1)
            }),
            "dc2 never turned into no path: {:?}",
            s1.get("/v1/kv/where?dc=dc2").map(|r| r.body)
        );
    }
    assert!(
        eventually(Duration::from_secs(40), || s1
            .get("/v1/kv/local?dc=dc2&raw")
            .is_ok_and(|r| r.status == 200 && r.body == "dc2")),
        "the WAN did not heal: {:?}",
        s1.get("/v1/kv/local?dc=dc2&raw").map(|r| r.body)
    );

    // Another cluster's server claiming dc1 joins the WAN pool through
    // dc2: dc1's servers refuse it and never list it.
    let mut rogue = server(ROGUE, 5, 1, "dc1", &dc2.ip);
    rogue.spawn();
    assert!(
        eventually(Duration::from_secs(30), || wan_names(dc2)
            .contains(&"s5.dc1".to_string())),
        "the rogue server never reached dc2's WAN view"
    );
    std::thread::sleep(Duration::from_secs(3));
    let seen = s1.get("/v1/agent/members?wan=1").unwrap().json();
    assert!(
        !seen
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Addr"] == rogue.ip.as_str()),
        "dc1 accepted a server of another cluster: {seen}"
    );
    assert!(
        s1.log_text()
            .contains("refusing a server that claims this datacenter"),
        "no log line for the refused server"
    );
    // dc1 still answers for itself.
    assert_eq!(s1.get("/v1/kv/local?raw").unwrap().body, "dc1");
}

const ACL_DC1: u8 = 200;
const ACL_DC2: u8 = 201;
const ROOT: &str = "5e1c6a4f-6c1e-4f3a-9d6b-1a2b3c4d5e6f";
const KEY1: &str = "T5Jn7XkqTOF3ZdKJv6uDd2uQiePoNm8XhgH8y3Pq2Ns=";
const KEY2: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";

/// ACLs in two datacenters with dc1 the primary: dc2 gets dc1's policies,
/// roles and global tokens by replication, sends its writes of them to
/// dc1, keeps its local tokens to itself, refuses to bootstrap, and goes
/// on authorizing with what it replicated while the WAN is cut.
#[test]
fn acl_policies_and_global_tokens_come_from_the_primary_datacenter() {
    use common::acl::{acl_conf, add_config, call, ok, req, token_with, wait_acl_ready};

    let seed = format!("127.0.{ACL_DC1}.1");
    let conf = |_dc: &str, tokens: Value| {
        let mut c = acl_conf("deny", tokens);
        c["primary_datacenter"] = json!("dc1");
        c
    };
    let mut p = server(ACL_DC1, 1, 1, "dc1", &seed);
    add_config(
        &mut p,
        "acl.json",
        &conf("dc1", json!({"initial_management": ROOT})),
    );
    let mut s = server(ACL_DC2, 1, 1, "dc2", &seed);
    add_config(
        &mut s,
        "acl.json",
        &conf("dc2", json!({"replication": ROOT, "agent": ROOT})),
    );
    let mut c = client(ACL_DC2, 4, "dc2");
    add_config(&mut c, "acl.json", &conf("dc2", json!({"agent": ROOT})));
    for n in [&mut p, &mut s, &mut c] {
        n.args.push(format!("-encrypt={KEY1}"));
    }
    p.spawn();
    s.spawn();
    c.spawn();
    assert!(wait_leader(&[&p], Duration::from_secs(30)).is_some());
    assert!(wait_leader(&[&s], Duration::from_secs(30)).is_some());
    wait_acl_ready(&p);

    // The primary's builtins and its initial management token arrive.
    assert!(
        eventually(Duration::from_secs(30), || call(
            &s,
            "GET",
            "/v1/acl/token/self",
            None,
            Some(ROOT)
        )
        .is_some_and(|r| r.status == 200)),
        "the management token never reached dc2; log:\n{}",
        s.log_text()
    );
    wait_acl_ready(&s);
    // dc2's client agent has found its server (it forwards ACL calls there).
    wait_acl_ready(&c);
    let status = ok(&s, "GET", "/v1/acl/replication", None, None);
    assert_eq!(status["Enabled"], true, "{status}");
    assert_eq!(status["Running"], true, "{status}");
    assert_eq!(status["SourceDatacenter"], "dc1", "{status}");
    assert_eq!(status["ReplicationType"], "tokens", "{status}");
    assert!(status["ReplicatedIndex"].as_u64() > Some(0), "{status}");
    assert_ne!(status["LastSuccess"], "0001-01-01T00:00:00Z", "{status}");
    let primary = ok(&p, "GET", "/v1/acl/replication", None, None);
    assert_eq!(primary["Enabled"], false, "{primary}");
    assert_eq!(primary["SourceDatacenter"], "", "{primary}");

    // A token made in dc1 works in dc2, with the rules of dc1's policy.
    let (_, app) = token_with(&p, ROOT, "app", r#"key_prefix "app/" { policy = "write" }"#);
    assert!(
        eventually(Duration::from_secs(10), || call(
            &s,
            "PUT",
            "/v1/kv/app/x",
            Some("1"),
            Some(&app)
        )
        .is_some_and(|r| r.status == 200)),
        "dc1's token did not authorize in dc2"
    );
    assert_eq!(
        req(&s, "PUT", "/v1/kv/other", Some("1"), Some(&app)).status,
        403
    );
    // KV stays per datacenter.
    assert_eq!(req(&p, "GET", "/v1/kv/app/x", None, Some(ROOT)).status, 404);

    // A policy limited to dc1 grants nothing in dc2, though its token is there.
    let scoped = json!({"Name": "scoped", "Datacenters": ["dc1"],
        "Rules": r#"key_prefix "scoped/" { policy = "write" }"#});
    ok(
        &p,
        "PUT",
        "/v1/acl/policy",
        Some(&scoped.to_string()),
        Some(ROOT),
    );
    let t = ok(
        &p,
        "PUT",
        "/v1/acl/token",
        Some(&json!({"Policies": [{"Name": "scoped"}]}).to_string()),
        Some(ROOT),
    );
    let scoped_secret = t["SecretID"].as_str().expect("SecretID").to_string();
    assert_eq!(
        req(
            &p,
            "PUT",
            "/v1/kv/scoped/a",
            Some("1"),
            Some(&scoped_secret)
        )
        .status,
        200
    );
    assert!(
        eventually(Duration::from_secs(10), || call(
            &s,
            "GET",
            "/v1/acl/token/self",
            None,
            Some(&scoped_secret)
        )
        .is_some_and(|r| r.status == 200)),
        "the scoped token did not reach dc2"
    );
    let r = req(
        &s,
        "PUT",
        "/v1/kv/scoped/a",
        Some("1"),
        Some(&scoped_secret),
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // A policy written through dc2's client agent is made in dc1.
    let body = json!({"Name": "from-dc2", "Rules": r#"node_prefix "" { policy = "read" }"#});
    let made = ok(
        &c,
        "PUT",
        "/v1/acl/policy",
        Some(&body.to_string()),
        Some(ROOT),
    );
    let id = made["ID"].as_str().expect("ID").to_string();
    let there = ok(&p, "GET", &format!("/v1/acl/policy/{id}"), None, Some(ROOT));
    assert_eq!(there["Name"], "from-dc2");
    assert!(
        eventually(Duration::from_secs(10), || call(
            &s,
            "GET",
            &format!("/v1/acl/policy/{id}"),
            None,
            Some(ROOT)
        )
        .is_some_and(|r| r.status == 200)),
        "the policy made in dc1 for dc2 did not come back"
    );
    // A global token updated in dc2 is updated in dc1.
    let t = ok(
        &s,
        "PUT",
        "/v1/acl/token",
        Some(&json!({"Description": "global", "Policies": [{"ID": id}]}).to_string()),
        Some(ROOT),
    );
    let accessor = t["AccessorID"].as_str().expect("AccessorID").to_string();
    assert_eq!(t["Local"], false);
    ok(
        &p,
        "GET",
        &format!("/v1/acl/token/{accessor}"),
        None,
        Some(ROOT),
    );

    // A local token stays in dc2.
    let local = ok(
        &s,
        "PUT",
        "/v1/acl/token",
        Some(&json!({"Description": "local", "Local": true, "Policies": [{"ID": id}]}).to_string()),
        Some(ROOT),
    );
    let local_id = local["AccessorID"]
        .as_str()
        .expect("AccessorID")
        .to_string();
    assert_eq!(local["Local"], true);
    assert_eq!(
        req(
            &p,
            "GET",
            &format!("/v1/acl/token/{local_id}"),
            None,
            Some(ROOT)
        )
        .status,
        403,
        "a local token of dc2 is not in dc1"
    );

    // Deleting the policy in dc1 deletes it in dc2; the local token, which
    // still names it, is left alone by replication.
    ok(
        &p,
        "DELETE",
        &format!("/v1/acl/policy/{id}"),
        None,
        Some(ROOT),
    );
    assert!(
        eventually(Duration::from_secs(10), || call(
            &s,
            "GET",
            &format!("/v1/acl/policy/{id}"),
            None,
            Some(ROOT)
        )
        .is_some_and(|r| r.status == 404)),
        "the deleted policy stayed in dc2"
    );
    ok(
        &s,
        "GET",
        &format!("/v1/acl/token/{local_id}"),
        None,
        Some(ROOT),
    );

    // Only the primary bootstraps.
    let r = req(&s, "PUT", "/v1/acl/bootstrap", None, None);
    assert_eq!((r.status, r.body.trim()), (401, "ACL support disabled"));

    // The internal state read is only for other datacenters' servers.
    assert_eq!(
        req(&p, "GET", "/v1/internal/acl/state", None, Some(ROOT)).status,
        404
    );

    // The gossip key is rotated from dc2's client agent and dc1's server in
    // every pool of both datacenters (the WAN pool shares the servers' LAN keyring), and
    // the WAN pool keeps working on the new key alone.
    let key = |k: &str| json!({ "Key": k }).to_string();
    for (at, method, k) in [(&c, "POST", KEY2), (&p, "PUT", KEY2), (&p, "DELETE", KEY1)] {
        let r = req(
            at,
            method,
            "/v1/operator/keyring",
            Some(&key(k)),
            Some(ROOT),
        );
        assert_eq!(r.status, 200, "{method} keyring: {}", r.body);
    }
    for n in [&p, &s, &c] {
        let file =
            std::fs::read_to_string(n.data_dir.join("serf/local.keyring")).expect("keyring file");
        let keys: Value = serde_json::from_str(&file).expect("keyring JSON");
        assert_eq!(keys, json!([KEY2]), "the keyring saved by {}", n.ip);
    }
    let pools = ok(&p, "GET", "/v1/operator/keyring", None, Some(ROOT));
    let summary: Vec<(bool, String, Value, u64)> = pools
        .as_array()
        .expect("pools")
        .iter()
        .map(|p| {
            (
                p["WAN"].as_bool().unwrap_or_default(),
                p["Datacenter"].as_str().unwrap_or_default().to_string(),
                p["PrimaryKeys"].clone(),
                p["NumNodes"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (true, "dc1".to_string(), json!({ KEY2: 2 }), 2),
            (false, "dc1".to_string(), json!({ KEY2: 1 }), 1),
            (false, "dc2".to_string(), json!({ KEY2: 2 }), 2),
        ],
        "{pools}"
    );
    let local = ok(
        &c,
        "GET",
        "/v1/operator/keyring?local-only=1",
        None,
        Some(ROOT),
    );
    assert_eq!(local.as_array().map(Vec::len), Some(1), "{local}");
    let after = json!({"Name": "after-rotation"});
    ok(
        &p,
        "PUT",
        "/v1/acl/policy",
        Some(&after.to_string()),
        Some(ROOT),
    );
    assert!(
        eventually(Duration::from_secs(10), || call(
            &s,
            "GET",
            "/v1/acl/policy/name/after-rotation",
            None,
            Some(ROOT)
        )
        .is_some_and(|r| r.status == 200)),
        "replication stopped after the key rotation"
    );
    assert!(
        eventually(Duration::from_secs(10), || {
            let m = ok(&s, "GET", "/v1/agent/members?wan=1", None, Some(ROOT));
            m.as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|m| m["Status"] == 1))
        }),
        "the WAN pool fell apart after the key rotation"
    );

    // Cut off from dc1, dc2 still authorizes with what it replicated, and
    // global writes get Consul's error for an unreachable datacenter
    // within a bounded time.
    let _cut = Partition::cut(&[(p.ip.as_str(), s.ip.as_str())]);
    assert_eq!(
        req(&s, "PUT", "/v1/kv/app/y", Some("2"), Some(&app)).status,
        200
    );
    let started = Instant::now();
    let r = req(
        &s,
        "PUT",
        "/v1/acl/policy",
        Some(&json!({"Name": "cut"}).to_string()),
        Some(ROOT),
    );
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
}
