//! Clusters of real `cairn` processes on their own loopback addresses:
//! bootstrapping with -bootstrap-expect, leader failover, client agents,
//! failure detection, a network partition, name conflicts and encryption.

mod common;

use common::cluster::{wait_leader, Node, Partition};
use common::eventually;
use std::time::Duration;

/// One bootstrapped server (.1) and a client agent (.2) joined to it.
fn server_and_client(net: u8) -> (Node, Node) {
    let mut s1 = Node::server(net, 1, 1, &[], &[]);
    s1.spawn();
    wait_leader(&[&s1], Duration::from_secs(15)).expect("leader");
    let mut c2 = Node::client(net, 2, &[1], &[]);
    c2.spawn();
    (s1, c2)
}

/// Registers a service on an agent once it accepts it.
fn register_on(agent: &Node, body: &str) {
    assert!(
        eventually(Duration::from_secs(15), || agent
            .put("/v1/agent/service/register", body)
            .is_ok_and(|r| r.status == 200)),
        "registering {body}"
    );
}

fn stale_value(n: &Node, key: &str) -> Option<String> {
    let r = n.get(&format!("/v1/kv/{key}?raw&stale")).ok()?;
    (r.status == 200).then_some(r.body)
}

#[test]
fn bootstrap_expect_in_any_order_then_leader_failover_loses_nothing() {
    let net = 11;
    let mut s3 = Node::server(net, 3, 3, &[1, 2], &[]);
    let mut s1 = Node::server(net, 1, 3, &[2, 3], &[]);
    let mut s2 = Node::server(net, 2, 3, &[1, 3], &[]);
    // Start in reverse order, with a gap: bootstrapping waits for all three.
    s3.spawn();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        s3.leader().is_empty(),
        "one server of three must not elect itself"
    );
    s1.spawn();
    s2.spawn();
    let leader =
        wait_leader(&[&s1, &s2, &s3], Duration::from_secs(20)).expect("a leader is elected");
    let peers = s1.get("/v1/status/peers").unwrap().json();
    assert_eq!(peers.as_array().unwrap().len(), 3, "{peers}");

    // A write through a follower is forwarded to the leader.
    let follower = [&s1, &s2, &s3]
        .into_iter()
        .find(|n| !leader.starts_with(&n.ip))
        .unwrap();
    let r = follower.put("/v1/kv/before", "kept").unwrap();
    assert_eq!((r.status, r.body.trim()), (200, "true"), "{}", r.body);
    for n in [&s1, &s2, &s3] {
        assert!(eventually(Duration::from_secs(5), || stale_value(
            n, "before"
        )
        .as_deref()
            == Some("kept")));
    }

    // Kill the leader: the others elect a new one and accept writes; nothing is lost.
    let mut nodes = [s1, s2, s3];
    let li = nodes
        .iter()
        .position(|n| leader.starts_with(&n.ip))
        .unwrap();
    nodes[li].kill9();
    let rest: Vec<&Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != li)
        .map(|(_, n)| n)
        .collect();
    assert!(
        eventually(Duration::from_secs(10), || {
            let l = rest[0].leader();
            !l.is_empty() && l != leader && rest[1].leader() == l
        }),
        "the surviving servers elect a new leader"
    );
    assert!(
        eventually(Duration::from_secs(10), || rest[0]
            .put("/v1/kv/after", "written")
            .is_ok_and(|r| r.body.trim() == "true")),
        "writes are accepted after failover"
    );
    assert_eq!(rest[1].get("/v1/kv/before?raw").unwrap().body, "kept");

    // The old leader comes back with its data dir, catches up, and the
    // cluster does not bootstrap a second time.
    nodes[li].spawn();
    assert!(eventually(Duration::from_secs(15), || stale_value(
        &nodes[li], "after"
    )
    .as_deref()
        == Some("written")));
    let peers = nodes[li].get("/v1/status/peers").unwrap().json();
    assert_eq!(peers.as_array().unwrap().len(), 3, "{peers}");
    assert!(wait_leader(&[&nodes[0], &nodes[1], &nodes[2]], Duration::from_secs(10)).is_some());
}

#[test]
fn client_agent_services_leave_health_when_the_agent_dies() {
    let net = 12;
    let (s1, mut c2) = server_and_client(net);
    register_on(&c2, r#"{"Name":"web","ID":"web1","Port":8080}"#);
    let passing = |n: &Node| {
        n.get("/v1/health/service/web?passing")
            .ok()
            .map(|r| r.json().as_array().map(|a| a.len()).unwrap_or(0))
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(10), || passing(&s1) == 1),
        "service visible on the server"
    );
    let inst = s1.get("/v1/health/service/web").unwrap().json();
    assert_eq!(inst[0]["Node"]["Node"], "c2");
    assert_eq!(inst[0]["Node"]["Address"], "127.0.12.2");

    assert!(eventually(Duration::from_secs(5), || s1
        .dig(&["+short", "web.service.consul", "A"])
        .contains("127.0.12.2")));
    assert!(
        c2.dig(&["+short", "web.service.consul", "SRV"])
            .contains("8080"),
        "the client agent answers DNS too"
    );

    c2.kill9();
    assert!(
        eventually(Duration::from_secs(15), || passing(&s1) == 0),
        "a dead agent's services drop out"
    );
    assert!(
        s1.dig(&["web.service.consul", "A"]).contains("NXDOMAIN"),
        "and leave DNS"
    );
    let checks = s1.get("/v1/health/node/c2").unwrap().json();
    let serf = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "serfHealth")
        .unwrap()
        .clone();
    assert_eq!(serf["Status"], "critical");
    assert_eq!(serf["Output"], "Agent not live or unreachable");

    c2.spawn();
    assert!(
        eventually(Duration::from_secs(15), || passing(&s1) == 1),
        "back when the agent returns"
    );
}

#[test]
fn partitioned_leader_stops_acknowledging_writes() {
    let net = 13;
    let mut s1 = Node::server(net, 1, 3, &[2, 3], &[]);
    let mut s2 = Node::server(net, 2, 3, &[1, 3], &[]);
    let mut s3 = Node::server(net, 3, 3, &[1, 2], &[]);
    for n in [&mut s1, &mut s2, &mut s3] {
        n.spawn();
    }
    let leader = wait_leader(&[&s1, &s2, &s3], Duration::from_secs(20)).expect("leader");
    let nodes = [&s1, &s2, &s3];
    let l = nodes.iter().find(|n| leader.starts_with(&n.ip)).unwrap();
    let others: Vec<&&Node> = nodes
        .iter()
        .filter(|n| !leader.starts_with(&n.ip))
        .collect();
    {
        let _cut = Partition::cut(&[(&l.ip, &others[0].ip), (&l.ip, &others[1].ip)]);
        // The majority side elects a new leader and takes writes.
        assert!(
            eventually(Duration::from_secs(15), || {
                let l2 = others[0].leader();
                !l2.is_empty() && l2 != leader && others[1].leader() == l2
            }),
            "majority elects a new leader"
        );
        assert!(eventually(Duration::from_secs(10), || others[0]
            .put("/v1/kv/majority", "yes")
            .is_ok_and(|r| r.body.trim() == "true")));
        // The cut-off leader must not acknowledge a write.
        let r = l.put("/v1/kv/minority", "no");
        assert!(
            !r.as_ref().is_ok_and(|r| r.status == 200),
            "minority leader acknowledged a write: {:?}",
            r.map(|r| r.body)
        );
    }
    // Healed: one leader again, and the old leader has the majority's write.
    assert!(wait_leader(&[&s1, &s2, &s3], Duration::from_secs(20)).is_some());
    assert!(eventually(Duration::from_secs(15), || stale_value(
        l, "majority"
    )
    .as_deref()
        == Some("yes")));
    assert!(
        stale_value(others[0], "minority").is_none(),
        "the unacknowledged write was not applied"
    );
}

/// Writes that reach a leader while it is being deposed are taken by the
/// next leader: none fails with "No cluster leader" (Consul holds an RPC
/// through an election) and every acknowledged one is there afterwards.
#[test]
fn writes_caught_by_a_leader_change_go_to_the_next_leader() {
    let net = 111;
    let mut s1 = Node::server(net, 1, 3, &[2, 3], &[]);
    let mut s2 = Node::server(net, 2, 3, &[1, 3], &[]);
    let mut s3 = Node::server(net, 3, 3, &[1, 2], &[]);
    for n in [&mut s1, &mut s2, &mut s3] {
        n.spawn();
    }
    let leader = wait_leader(&[&s1, &s2, &s3], Duration::from_secs(20)).expect("leader");
    let nodes = [&s1, &s2, &s3];
    let old = *nodes.iter().find(|n| leader.starts_with(&n.ip)).unwrap();
    let others: Vec<&Node> = nodes
        .iter()
        .copied()
        .filter(|n| !leader.starts_with(&n.ip))
        .collect();
    // The leader stops; writes sent to it wait in its sockets while the
    // other two elect a new leader, and reach it when it runs again, still
    // believing it leads.
    old.pause();
    let writes: Vec<_> = (0..20)
        .map(|i| {
            let ip = old.ip.clone();
            std::thread::spawn(move || {
                let url = format!("http://{ip}:8500/v1/kv/held/{i}");
                common::http_request("PUT", &url, Some(format!("v{i}").as_bytes()), &[])
            })
        })
        .collect();
    let elected = eventually(Duration::from_secs(15), || {
        let l = others[0].leader();
        !l.is_empty() && l != leader && others[1].leader() == l
    });
    std::thread::sleep(Duration::from_millis(500));
    old.resume();
    assert!(elected, "the other two elect a new leader");
    for (i, w) in writes.into_iter().enumerate() {
        let r = w.join().unwrap().expect("an answer");
        assert_eq!(
            (r.status, r.body.trim()),
            (200, "true"),
            "write {i} sent to the deposed leader"
        );
    }
    for i in 0..20 {
        let r = others[0]
            .get(&format!("/v1/kv/held/{i}?raw&consistent"))
            .unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, format!("v{i}").as_str()));
    }
}

#[test]
fn second_agent_with_a_taken_name_is_refused() {
    let net = 14;
    let mut s1 = Node::server(net, 1, 1, &[], &[]);
    s1.spawn();
    wait_leader(&[&s1], Duration::from_secs(15)).expect("leader");
    let mut dup = Node::new("s1", net, 2, vec!["-retry-join=127.0.14.1".into()]);
    dup.spawn();
    let code = dup.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(1), "log:\n{}", dup.log_text());
    assert!(
        dup.log_text()
            .contains("Node name s1 conflicts with another node at 127.0.14.1"),
        "{}",
        dup.log_text()
    );
    assert!(s1.running(), "the first agent keeps running");
}

#[test]
fn gossip_encryption_keeps_out_agents_with_another_key() {
    let net = 15;
    let key = "T5Jn7XkqTOF3ZdKJv6uDd2uQiePoNm8XhgH8y3Pq2Ns=";
    let other = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
    let mut s1 = Node::server(net, 1, 1, &[], &[&format!("-encrypt={key}")]);
    s1.spawn();
    wait_leader(&[&s1], Duration::from_secs(15)).expect("leader");
    let mut wrong = Node::client(
        net,
        2,
        &[1],
        &[&format!("-encrypt={other}"), "-retry-max=2"],
    );
    wrong.spawn();
    assert_eq!(
        wrong.wait_exit(Duration::from_secs(20)),
        Some(1),
        "log:\n{}",
        wrong.log_text()
    );
    assert!(wrong.log_text().contains("max join retry exhausted"));
    let mut plain = Node::client(net, 3, &[1], &["-retry-max=2"]);
    plain.spawn();
    assert_eq!(
        plain.wait_exit(Duration::from_secs(20)),
        Some(1),
        "an agent without the key cannot join"
    );
    let mut right = Node::client(net, 4, &[1], &[&format!("-encrypt={key}")]);
    right.spawn();
    assert!(eventually(Duration::from_secs(15), || s1
        .get("/v1/catalog/nodes")
        .is_ok_and(|r| r.body.contains("\"c4\""))));
    assert!(!s1.get("/v1/catalog/nodes").unwrap().body.contains("\"c2\""));
}

fn cli(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(common::BIN)
        .args(args)
        .output()
        .expect("run cairn");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

fn member_status(n: &Node, name: &str) -> Option<u64> {
    let v = n.get("/v1/agent/members").ok()?.json();
    v.as_array()?
        .iter()
        .find(|m| m["Name"] == name)
        .and_then(|m| m["Status"].as_u64())
}

#[test]
fn members_leave_force_leave_and_the_cli() {
    let net = 16;
    let mut s1 = Node::server(net, 1, 1, &[], &[]);
    s1.spawn();
    wait_leader(&[&s1], Duration::from_secs(15)).expect("leader");
    let mut c2 = Node::client(net, 2, &[1], &[]);
    let mut c3 = Node::client(net, 3, &[1], &[]);
    c2.spawn();
    c3.spawn();
    let addr = "-http-addr=127.0.16.1:8500";
    assert!(eventually(Duration::from_secs(15), || {
        let (code, out) = cli(&["members", addr]);
        code == 0 && out.contains("c2") && out.contains("c3") && out.matches("alive").count() == 3
    }));
    let (_, out) = cli(&["members", addr]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("Node") && lines[0].contains("Address") && lines[0].contains("Status"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("s1") && lines[1].contains("server"),
        "servers first: {out}"
    );
    assert!(
        out.contains("127.0.16.2:8301") && out.contains("client"),
        "{out}"
    );

    let (code, out) = cli(&["operator", "raft", "list-peers", addr]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("s1") && out.contains("leader") && out.contains("127.0.16.1:8300"),
        "{out}"
    );
    let (code, out) = cli(&["info", addr]);
    assert_eq!(code, 0);
    assert!(out.contains("raft:") && out.contains("serf_lan:"), "{out}");

    // The agents answer DNS for the whole catalog from their replica.
    assert!(eventually(Duration::from_secs(10), || c3
        .dig(&["+short", "s1.node.consul", "A"])
        .contains("127.0.16.1")));

    // Graceful leave: the agent exits, its member status is left, its node leaves the catalog.
    let (code, out) = cli(&["leave", "-http-addr=127.0.16.2:8500"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(c2.wait_exit(Duration::from_secs(15)), Some(0));
    assert!(
        eventually(Duration::from_secs(10), || member_status(&s1, "c2")
            == Some(3)),
        "c2 is left"
    );
    assert!(eventually(Duration::from_secs(10), || !s1
        .get("/v1/catalog/nodes")
        .unwrap()
        .body
        .contains("\"c2\"")));

    // A killed agent is failed until force-left.
    c3.kill9();
    assert!(
        eventually(Duration::from_secs(15), || member_status(&s1, "c3")
            == Some(4)),
        "c3 is failed"
    );
    let (code, out) = cli(&["force-leave", addr, "c3"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        eventually(Duration::from_secs(10), || member_status(&s1, "c3")
            == Some(3)),
        "c3 is left"
    );
    assert!(eventually(Duration::from_secs(10), || !s1
        .get("/v1/catalog/nodes")
        .unwrap()
        .body
        .contains("\"c3\"")));
    let (code, _) = cli(&["force-leave", addr, "nosuchnode"]);
    assert_eq!(code, 1);
}

#[test]
fn late_server_becomes_a_voter_and_a_dead_one_is_removed() {
    let net = 17;
    let mut nodes: Vec<Node> = (1..=3)
        .map(|h| Node::server(net, h, 3, &[1, 2, 3], &[]))
        .collect();
    for n in nodes.iter_mut() {
        n.spawn();
    }
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_leader(&refs, Duration::from_secs(20)).expect("leader");
    let peers = |n: &Node| {
        n.get("/v1/status/peers")
            .ok()
            .and_then(|r| r.json().as_array().map(|a| a.len()))
            .unwrap_or(0)
    };
    let mut s4 = Node::server(net, 4, 3, &[1], &[]);
    s4.spawn();
    assert!(
        eventually(Duration::from_secs(20), || peers(&nodes[0]) == 4),
        "the fourth server becomes a voter"
    );
    assert!(eventually(Duration::from_secs(10), || !s4
        .leader()
        .is_empty()));
    s4.kill9();
    // Removed after the dead-server grace period, since three voters remain healthy.
    assert!(
        eventually(Duration::from_secs(30), || peers(&nodes[0]) == 3),
        "the dead server is removed"
    );
    assert!(eventually(Duration::from_secs(5), || nodes[1]
        .put("/v1/kv/still", "writable")
        .is_ok_and(|r| r.body.trim() == "true")));
}

#[test]
fn whole_cluster_restart_keeps_every_acknowledged_write() {
    let net = 18;
    let mut nodes: Vec<Node> = (1..=3)
        .map(|h| Node::server(net, h, 3, &[1, 2, 3], &[]))
        .collect();
    for n in nodes.iter_mut() {
        n.spawn();
    }
    wait_leader(&nodes.iter().collect::<Vec<_>>(), Duration::from_secs(20)).expect("leader");
    for i in 0..30 {
        let r = nodes[i % 3]
            .put(&format!("/v1/kv/k{i}"), &format!("v{i}"))
            .unwrap();
        assert_eq!(r.body.trim(), "true", "{}", r.body);
    }
    for n in nodes.iter_mut() {
        n.kill9();
    }
    for n in nodes.iter_mut() {
        n.spawn();
    }
    wait_leader(&nodes.iter().collect::<Vec<_>>(), Duration::from_secs(20))
        .expect("leader after restart");
    for i in 0..30 {
        let r = nodes[(i + 1) % 3].get(&format!("/v1/kv/k{i}?raw")).unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, format!("v{i}").as_str()));
    }
}

#[test]
fn follower_far_behind_catches_up_by_snapshot() {
    let net = 19;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("raft.json");
    std::fs::write(
        &cfg,
        r#"{"raft_snapshot_threshold": 50, "raft_trailing_logs": 5}"#,
    )
    .unwrap();
    let cfg_flag = format!("-config-file={}", cfg.display());
    let mut nodes: Vec<Node> = (1..=3)
        .map(|h| Node::server(net, h, 3, &[1, 2, 3], &[&cfg_flag]))
        .collect();
    for n in nodes.iter_mut() {
        n.spawn();
    }
    let leader =
        wait_leader(&nodes.iter().collect::<Vec<_>>(), Duration::from_secs(20)).expect("leader");
    let fi = nodes
        .iter()
        .position(|n| !leader.starts_with(&n.ip))
        .unwrap();
    nodes[fi].kill9();
    let li = nodes
        .iter()
        .position(|n| leader.starts_with(&n.ip))
        .unwrap();
    for i in 0..200 {
        let r = nodes[li].put(&format!("/v1/kv/far/{i}"), "x").unwrap();
        assert_eq!(r.body.trim(), "true");
    }
    nodes[fi].spawn();
    assert!(
        eventually(Duration::from_secs(20), || nodes[fi]
            .get("/v1/kv/far/199?raw&stale")
            .is_ok_and(|r| r.status == 200)),
        "the follower catches up"
    );
    let keys = nodes[fi].get("/v1/kv/far/?keys&stale").unwrap().json();
    assert_eq!(keys.as_array().unwrap().len(), 200);
    // It got there through a snapshot sent by the leader, whose log no
    // longer holds the entries the follower missed.
    assert!(
        nodes[fi].log_text().contains("raft: installed snapshot"),
        "{}",
        nodes[fi].log_text()
    );
}

#[test]
fn checks_on_a_client_agent_drive_dns_on_the_servers() {
    let net = 25;
    let (s1, c2) = server_and_client(net);
    register_on(
        &c2,
        r#"{"Name":"api","ID":"api1","Port":9000,"Check":{"TTL":"30s","Status":"passing"}}"#,
    );
    let in_dns = || {
        s1.dig(&["+short", "api.service.consul", "A"])
            .contains("127.0.25.2")
    };
    assert!(eventually(Duration::from_secs(10), in_dns));
    let r = c2
        .put("/v1/agent/check/fail/service:api1?note=down", "")
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        eventually(Duration::from_secs(10), || !in_dns()),
        "a failing check on the client removes it from the server's DNS"
    );
    let r = c2.put("/v1/agent/check/pass/service:api1", "").unwrap();
    assert_eq!(r.status, 200);
    assert!(eventually(Duration::from_secs(10), in_dns));
}

#[test]
fn no_leader_errors_read_modes_bad_packets_remove_peer_and_join() {
    use std::io::Write;
    let net = 26;
    // One server of three: no quorum, so writes and leader reads fail the Consul way.
    let mut s1 = Node::server(net, 1, 3, &[2, 3], &[]);
    s1.spawn();
    assert!(eventually(Duration::from_secs(10), || s1
        .get("/v1/status/leader")
        .is_ok()));
    let r = s1.put("/v1/kv/x", "1").unwrap();
    assert_eq!((r.status, r.body.trim()), (500, "No cluster leader"));
    let r = s1.get("/v1/kv/x").unwrap();
    assert_eq!((r.status, r.body.trim()), (500, "No cluster leader"));
    assert_eq!(
        s1.get("/v1/kv/x?stale").unwrap().status,
        404,
        "stale reads need no leader"
    );

    let mut s2 = Node::server(net, 2, 3, &[1, 3], &[]);
    let mut s3 = Node::server(net, 3, 3, &[1, 2], &[]);
    s2.spawn();
    s3.spawn();
    let leader = wait_leader(&[&s1, &s2, &s3], Duration::from_secs(20)).expect("leader");
    let nodes = [&s1, &s2, &s3];
    let follower = nodes.iter().find(|n| !leader.starts_with(&n.ip)).unwrap();
    assert_eq!(follower.put("/v1/kv/x", "1").unwrap().body.trim(), "true");
    // The write is acknowledged once the leader commits it; a follower
    // applies it a moment later, and a stale read may run before that (as
    // in Consul), so wait for it to be applied there first.
    assert!(eventually(Duration::from_secs(5), || follower
        .get("/v1/kv/x?stale")
        .is_ok_and(|r| r.status == 200)));
    for (q, mode) in [
        ("?stale", "stale"),
        ("?consistent", "consistent"),
        ("", "leader"),
    ] {
        let r = follower.get(&format!("/v1/kv/x{q}")).unwrap();
        assert_eq!(r.status, 200, "{q}");
        assert_eq!(r.header("x-consul-effective-consistency"), Some(mode));
        assert_eq!(r.header("x-consul-knownleader"), Some("true"));
        assert!(
            r.header("x-consul-lastcontact")
                .is_some_and(|v| v.parse::<u64>().is_ok()),
            "{q}"
        );
    }

    // Garbage on the gossip and RPC ports is dropped with a log line; the agent keeps serving.
    let udp = std::net::UdpSocket::bind(format!("127.0.{net}.9:0")).unwrap();
    for _ in 0..20 {
        udp.send_to(
            b"\xff\x00not a gossip packet\x01\x02",
            format!("{}:8301", s1.ip),
        )
        .unwrap();
    }
    let mut tcp = std::net::TcpStream::connect(format!("{}:8300", s1.ip)).unwrap();
    tcp.write_all(&[0, 0, 0, 9, 1, 2, 3]).unwrap();
    drop(tcp);
    let mut tcp = std::net::TcpStream::connect(format!("{}:8300", s1.ip)).unwrap();
    tcp.write_all(&[0, 0, 0, 3, 0xff, 0xfe, 0xfd]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(s1.running());
    assert!(eventually(Duration::from_secs(5), || s1
        .log_text()
        .contains("gossip: dropping malformed packet")));
    assert!(eventually(Duration::from_secs(5), || s1
        .log_text()
        .contains("rpc: dropping connection")));
    assert_eq!(s1.get("/v1/kv/x?stale").unwrap().status, 200);

    // remove-peer takes a dead server out of the voters at once.
    let mut nodes = [s1, s2, s3];
    let di = nodes
        .iter()
        .position(|n| !leader.starts_with(&n.ip))
        .unwrap();
    let dead_ip = nodes[di].ip.clone();
    nodes[di].kill9();
    let alive: Vec<&Node> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != di)
        .map(|(_, n)| n)
        .collect();
    let addr = format!("-http-addr={}:8500", alive[0].ip);
    let dead_name = format!("s{}", dead_ip.rsplit('.').next().unwrap());
    assert!(eventually(Duration::from_secs(10), || member_status(
        alive[0], &dead_name
    ) == Some(4)));
    let (code, out) = cli(&[
        "operator",
        "raft",
        "remove-peer",
        &addr,
        &format!("-address={dead_ip}:8300"),
    ]);
    assert_eq!(code, 0, "{out}");
    let peers = |n: &Node| {
        n.get("/v1/status/peers")
            .unwrap()
            .json()
            .as_array()
            .unwrap()
            .len()
    };
    assert!(eventually(Duration::from_secs(3), || peers(alive[0]) == 2
        && peers(alive[1]) == 2));
    let (code, out) = cli(&[
        "operator",
        "raft",
        "remove-peer",
        &addr,
        "-address=10.9.9.9:8300",
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains("was not found in the Raft configuration"),
        "{out}"
    );

    // `cairn join` brings in an agent started without -retry-join.
    let mut c5 = Node::client(net, 5, &[], &[]);
    c5.spawn();
    assert!(eventually(Duration::from_secs(10), || c5
        .get("/v1/agent/self")
        .is_ok()));
    let (code, out) = cli(&["join", "-http-addr=127.0.26.5:8500", &alive[0].ip]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("Successfully joined cluster by contacting 1 nodes."),
        "{out}"
    );
    assert!(eventually(Duration::from_secs(10), || member_status(
        alive[0], "c5"
    ) == Some(1)));

    // keygen prints a base64 32-byte key that -encrypt accepts.
    let (code, key) = cli(&["keygen"]);
    assert_eq!(code, 0);
    assert_eq!(key.trim().len(), 44, "{key}");
}
