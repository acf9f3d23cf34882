//! Client agents outside raft, with real processes on their own loopback
//! addresses: three servers and three client agents. Client agents hold no
//! raft state and never appear in the raft configuration; they answer DNS
//! from a view of the catalog fed by a subscription to a server, follow
//! changes when that server dies, and keep their own services across a
//! SIGKILL. Also: joins that retry after about a second, so servers
//! started together (or in the wrong order) form a cluster in seconds.

mod common;

use common::cluster::{wait_leader, Node};
use common::eventually;
use std::io::Write;
use std::time::{Duration, Instant};

/// Servers .1-.3 (bootstrap-expect=3) and client agents .4-.6.
fn cluster(net: u8) -> (Vec<Node>, Vec<Node>) {
    let mut servers: Vec<Node> = (1..=3)
        .map(|h| Node::server(net, h, 3, &[1, 2, 3], &[]))
        .collect();
    for s in &mut servers {
        s.spawn();
    }
    let refs: Vec<&Node> = servers.iter().collect();
    wait_leader(&refs, Duration::from_secs(20)).expect("leader");
    let mut clients: Vec<Node> = (4..=6)
        .map(|h| Node::client(net, h, &[1, 2], &[]))
        .collect();
    for c in &mut clients {
        c.spawn();
    }
    for c in &clients {
        assert!(
            eventually(Duration::from_secs(20), || c.leader().starts_with("127.0.")),
            "{} never learned the leader; log:\n{}",
            c.name,
            c.log_text()
        );
    }
    (servers, clients)
}

fn register(agent: &Node, body: &str) {
    let r = agent.put("/v1/agent/service/register", body).expect("PUT");
    assert_eq!(r.status, 200, "{}: {}", agent.name, r.body);
}

fn a_records(agent: &Node, name: &str) -> String {
    agent.dig(&["+short", name, "A"])
}

/// The server a client agent's subscription is on, from its log.
fn feed_server(c: &Node) -> Option<String> {
    let log = c.log_text();
    let line = log.lines().rev().find(|l| l.contains("feed: subscribed"))?;
    let at = line.find("server=")? + "server=".len();
    let rest = &line[at..];
    let end = rest
        .find(|ch: char| ch.is_whitespace())
        .unwrap_or(rest.len());
    // Strip ANSI colour codes the log may carry.
    Some(
        rest[..end]
            .chars()
            .filter(|ch| ch.is_ascii_digit() || *ch == '.' || *ch == ':')
            .collect(),
    )
}

fn cli(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(common::BIN)
        .args(args)
        .output()
        .expect("run cairn");
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), s)
}

#[test]
fn client_agents_stay_out_of_raft_and_answer_dns_from_their_view() {
    let net = 40;
    let (servers, clients) = cluster(net);

    // Raft is the three servers, whoever is asked; clients are not peers.
    for asked in [&servers[0], &clients[0]] {
        let conf = asked.get("/v1/operator/raft/configuration").unwrap().json();
        let mut nodes: Vec<String> = conf["Servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["Node"].as_str().unwrap().to_string())
            .collect();
        nodes.sort();
        assert_eq!(nodes, vec!["s1", "s2", "s3"], "asked {}", asked.name);
        let peers = asked.get("/v1/status/peers").unwrap().json();
        assert_eq!(peers.as_array().unwrap().len(), 3);
    }
    // The runbook: list-peers through a client agent shows the servers,
    // one leader, and every follower caught up.
    let addr = format!("-http-addr={}:8500", clients[0].ip);
    let peers_ok = |out: &str| {
        out.lines().count() == 4
            && out.matches("leader").count() == 1
            && out.matches("follower").count() == 2
            && out.matches(" 0 commits").count() == 2
    };
    assert!(
        eventually(Duration::from_secs(10), || peers_ok(
            &cli(&["operator", "raft", "list-peers", &addr]).1
        )),
        "{}",
        cli(&["operator", "raft", "list-peers", &addr]).1
    );
    let (_, out) = cli(&["operator", "raft", "list-peers", &addr]);
    for c in &clients {
        assert!(!out.contains(&c.ip), "{} is in list-peers:\n{out}", c.name);
    }
    // Members still lists everyone.
    assert!(eventually(Duration::from_secs(10), || {
        let (code, out) = cli(&["members", &addr]);
        code == 0 && out.matches("alive").count() == 6
    }));

    // A client agent's own stats: no raft, the servers it knows.
    let me = clients[0].get("/v1/agent/self").unwrap().json();
    assert!(me["Stats"].get("raft").is_none(), "{}", me["Stats"]);
    assert_eq!(me["Stats"]["consul"]["server"], "false");
    assert_eq!(me["Stats"]["consul"]["known_servers"], "3");

    // Registered on one client agent, answered by the others' DNS.
    register(
        &clients[0],
        r#"{"Name":"web","ID":"web1","Port":8080,"Check":{"TTL":"30s","Status":"passing"}}"#,
    );
    for c in &clients[1..] {
        assert!(
            eventually(Duration::from_secs(5), || a_records(
                c,
                "web.service.consul"
            )
            .contains(&clients[0].ip)),
            "{} does not answer web",
            c.name
        );
    }
    // And by its own DNS, as soon as the registration returned.
    assert!(a_records(&clients[0], "web.service.consul").contains(&clients[0].ip));
    // A failing check takes it out of every client agent's answers.
    let r = clients[0]
        .put("/v1/agent/check/fail/service:web1", "")
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    for c in &clients {
        assert!(
            eventually(Duration::from_secs(5), || a_records(
                c,
                "web.service.consul"
            )
            .trim()
            .is_empty()),
            "{} still answers web after its check failed",
            c.name
        );
    }

    // Default and consistent reads go through a server (and so see a write
    // made on another agent at once); stale reads come from the view, with
    // the headers Consul sends: after the default read the view has it.
    let r = clients[1].put("/v1/kv/app/config", "v1").unwrap();
    assert_eq!(r.body.trim(), "true");
    for (q, mode) in [
        ("", "leader"),
        ("?consistent", "consistent"),
        ("?stale", "stale"),
    ] {
        let r = clients[2].get(&format!("/v1/kv/app/config{q}")).unwrap();
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        assert_eq!(r.header("x-consul-effective-consistency"), Some(mode));
        assert_eq!(r.header("x-consul-knownleader"), Some("true"), "{q}");
        let contact: u64 = r
            .header("x-consul-lastcontact")
            .and_then(|v| v.parse().ok())
            .expect("LastContact");
        assert!(contact < 5_000, "{q}: last contact {contact} ms");
    }
    // A write through one client is visible to a default read on another
    // at once (the read waits for the leader's index).
    let r = clients[0].put("/v1/kv/app/config", "v2").unwrap();
    assert_eq!(r.body.trim(), "true");
    let r = clients[2].get("/v1/kv/app/config?raw").unwrap();
    assert_eq!(r.body, "v2");

    // A blocking query on a client agent wakes on a write made elsewhere.
    let index = clients[2].get("/v1/kv/app/config").unwrap().index();
    let c2 = format!("http://{}:8500", clients[2].ip);
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let r = common::http_request(
            "GET",
            &format!("{c2}/v1/kv/app/config?index={index}&wait=20s"),
            None,
            &[],
        )
        .unwrap();
        (r.index(), started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    clients[1].put("/v1/kv/app/config", "v3").unwrap();
    let (woke_at, took) = waiter.join().unwrap();
    assert!(woke_at > index, "blocking read returned index {woke_at}");
    assert!(took < Duration::from_secs(5), "woke after {took:?}");
}

#[test]
fn a_client_follows_changes_when_its_server_dies_and_never_goes_back() {
    let net = 41;
    let (mut servers, clients) = cluster(net);
    let watcher = &clients[1];
    // With followers alive, subscriptions are served by a follower (one
    // made while its server was leader moves within seconds).
    let mut addr = String::new();
    assert!(
        eventually(Duration::from_secs(20), || {
            addr = feed_server(watcher).unwrap_or_default();
            !addr.is_empty() && addr != servers[0].leader()
        }),
        "subscription on {addr:?}, leader {}; log:\n{}",
        servers[0].leader(),
        watcher.log_text()
    );

    // Watch the view's index from the other side while the server dies.
    let stale_index = |n: &Node| {
        n.get("/v1/catalog/services?stale")
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| r.index())
    };
    let own_node = |n: &Node| n.dig(&["+short", "c5.node.consul", "A"]).contains(&n.ip);
    assert!(
        eventually(Duration::from_secs(10), || own_node(watcher)),
        "c5 never registered itself"
    );
    let before = stale_index(watcher).expect("stale read");
    let victim = servers
        .iter_mut()
        .find(|s| addr.starts_with(&s.ip))
        .expect("the subscription's server");
    victim.kill9();
    let killed = Instant::now();

    // DNS keeps answering from the view meanwhile (the node itself is
    // always there), and the view follows a change made after the kill.
    let answer = watcher.dig(&["c5.node.consul", "A"]);
    assert!(answer.contains(&watcher.ip), "{answer}");
    let rest: Vec<&Node> = servers.iter().filter(|s| s.child.is_some()).collect();
    let new_leader = wait_leader(&rest, Duration::from_secs(15)).expect("leader after the kill");
    let target = rest.iter().find(|s| new_leader.starts_with(&s.ip)).unwrap();
    let r = target
        .put(
            "/v1/catalog/register",
            r#"{"Node":"ext1","Address":"10.9.0.1","Service":{"Service":"after","Port":80}}"#,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let mut last = before;
    assert!(
        eventually(Duration::from_secs(10), || {
            if let Some(i) = stale_index(watcher) {
                assert!(i >= last, "the view went back from {last} to {i}");
                last = i;
            }
            a_records(watcher, "after.service.consul").contains("10.9.0.1")
        }),
        "the view did not follow a change after its server died; log:\n{}",
        watcher.log_text()
    );
    assert!(
        killed.elapsed() < Duration::from_secs(15),
        "took {:?}",
        killed.elapsed()
    );
    let now = feed_server(watcher).expect("a new subscription");
    assert_ne!(now, addr, "resubscribed elsewhere");

    // Every client agent still writes (through a surviving server).
    for c in &clients {
        let r = c.put(&format!("/v1/kv/after/{}", c.name), "ok").unwrap();
        assert_eq!(r.body.trim(), "true", "{}: {}", c.name, r.body);
    }
}

#[test]
fn a_sigkilled_client_keeps_its_services_and_checks() {
    let net = 42;
    let (servers, mut clients) = cluster(net);
    let c = &mut clients[0];
    register(
        c,
        r#"{"Name":"db","ID":"db1","Port":5432,"Checks":[{"CheckID":"db-ttl","TTL":"60s","Status":"passing"}]}"#,
    );
    let r = c.put(
        "/v1/agent/check/register",
        r#"{"ID":"node-ttl","Name":"node ttl","TTL":"60s","Status":"passing"}"#,
    );
    assert_eq!(r.unwrap().status, 200);
    c.kill9();
    c.spawn();
    assert!(eventually(Duration::from_secs(20), || c
        .get("/v1/agent/services")
        .is_ok_and(|r| r.body.contains("\"db1\""))));
    let checks = c.get("/v1/agent/checks").unwrap().json();
    assert_eq!(checks["db-ttl"]["Status"], "passing");
    assert!(checks.get("node-ttl").is_some(), "{checks}");
    // And it is still in the catalog, seen from a server.
    assert!(
        eventually(Duration::from_secs(10), || servers[1]
            .get("/v1/health/service/db?passing")
            .is_ok_and(|r| r.body.contains("db1"))),
        "{}\n{}",
        servers[1].get("/v1/health/service/db").unwrap().body,
        c.log_text()
    );
}

#[test]
fn malformed_subscription_frames_drop_the_connection_and_nothing_else() {
    let net = 43;
    let mut s1 = Node::server(net, 1, 1, &[], &[]);
    s1.spawn();
    wait_leader(&[&s1], Duration::from_secs(15)).expect("leader");
    // The feed's protocol byte, then a frame that does not decode.
    let mut tcp = std::net::TcpStream::connect(format!("{}:8300", s1.ip)).unwrap();
    tcp.write_all(&[0x10, 0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef])
        .unwrap();
    // An unknown protocol byte.
    let mut tcp2 = std::net::TcpStream::connect(format!("{}:8300", s1.ip)).unwrap();
    tcp2.write_all(&[0x7e, 1, 2, 3]).unwrap();
    assert!(eventually(Duration::from_secs(5), || s1
        .log_text()
        .contains("feed: dropping connection")));
    assert!(eventually(Duration::from_secs(5), || s1
        .log_text()
        .contains("unknown protocol byte")));
    assert!(s1.running());
    // A client agent still subscribes and syncs.
    let mut c = Node::client(net, 2, &[1], &[]);
    c.spawn();
    assert!(eventually(Duration::from_secs(15), || c
        .dig(&["+short", "s1.node.consul", "A"])
        .contains(&s1.ip)));
}

#[test]
fn a_client_agent_without_servers_says_so() {
    let net = 46;
    let mut c = Node::client(net, 1, &[], &[]);
    c.spawn();
    assert!(eventually(Duration::from_secs(10), || c
        .get("/v1/agent/self")
        .is_ok()));
    // Its view never synced: DNS fails rather than deny that anything exists.
    let out = c.dig(&["c1.node.consul", "A"]);
    assert!(out.contains("status: SERVFAIL"), "{out}");
    for path in ["/v1/kv/k?stale", "/v1/kv/k", "/v1/status/leader"] {
        let r = c.get(path).unwrap();
        assert_eq!(
            (r.status, r.body.trim()),
            (500, "No known Consul servers"),
            "{path}"
        );
    }
    let r = c.put("/v1/kv/k", "v").unwrap();
    assert_eq!((r.status, r.body.trim()), (500, "No known Consul servers"));
}

#[test]
fn servers_started_together_form_a_cluster_within_seconds() {
    let net = 44;
    // The join target starts last; the others' first joins fail. With the
    // default -retry-interval (30 s) the retries still come about a second
    // apart at first.
    let slow = ["-retry-interval=30s"];
    let mut s2 = Node::server(net, 2, 3, &[1], &slow);
    let mut s3 = Node::server(net, 3, 3, &[1], &slow);
    let mut s1 = Node::server(net, 1, 3, &[], &slow);
    let started = Instant::now();
    s2.spawn();
    s3.spawn();
    std::thread::sleep(Duration::from_millis(1500));
    s1.spawn();
    wait_leader(&[&s1, &s2, &s3], Duration::from_secs(12))
        .expect("a leader within seconds of the last server starting");
    assert!(started.elapsed() < Duration::from_secs(12));

    // A common compose file: one server with -bootstrap-expect, the others
    // only -server -join <it>, all started at once.
    let net = 45;
    let mut a = Node::new(
        "s1",
        net,
        1,
        vec![
            "-server".into(),
            "-bootstrap-expect=3".into(),
            "-retry-interval=30s".into(),
        ],
    );
    let joiner = |h: u8| {
        Node::new(
            &format!("s{h}"),
            net,
            h,
            vec![
                "-server".into(),
                format!("-join=127.0.{net}.1"),
                "-retry-interval=30s".into(),
            ],
        )
    };
    let (mut b, mut c) = (joiner(2), joiner(3));
    let started = Instant::now();
    b.spawn();
    c.spawn();
    std::thread::sleep(Duration::from_millis(800));
    a.spawn();
    wait_leader(&[&a, &b, &c], Duration::from_secs(12)).expect("leader");
    assert!(started.elapsed() < Duration::from_secs(12));
}
