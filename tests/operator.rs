//! Operator endpoints and commands against real `cairn` processes:
//! autopilot configuration, health and state on a three-server cluster,
//! leadership transfer, usage, and config entries (HTTP and CLI).

mod common;

use common::cluster::{wait_leader, Node};
use common::{eventually, TestAgent, BIN};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// Runs `cairn <args>`; (exit code, stdout, stderr).
fn cairn(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().expect("run cairn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(n: &Node, path: &str) -> Option<Value> {
    let r = n.get(path).ok()?;
    (r.status == 200).then(|| r.json())
}

/// The node whose RPC address is `leader`.
fn by_addr<'a>(nodes: &[&'a Node], leader: &str) -> &'a Node {
    nodes
        .iter()
        .find(|n| leader.starts_with(&format!("{}:", n.ip)))
        .copied()
        .expect("leader is one of the nodes")
}

#[test]
fn autopilot_and_leadership_transfer_on_three_servers() {
    let net = 191;
    let mut s1 = Node::server(net, 1, 3, &[2, 3], &[]);
    let mut s2 = Node::server(net, 2, 3, &[1, 3], &[]);
    let mut s3 = Node::server(net, 3, 3, &[1, 2], &[]);
    for s in [&mut s1, &mut s2, &mut s3] {
        s.spawn();
    }
    let nodes = [&s1, &s2, &s3];
    let leader = wait_leader(&nodes, Duration::from_secs(20)).expect("a leader");

    // The leader writes Consul's defaults once it leads.
    let mut conf = Value::Null;
    assert!(
        eventually(Duration::from_secs(10), || {
            conf = json_of(&s1, "/v1/operator/autopilot/configuration").unwrap_or_default();
            conf["ModifyIndex"].as_u64().unwrap_or(0) > 0
        }),
        "{conf}"
    );
    assert_eq!(conf["CleanupDeadServers"], true);
    assert_eq!(conf["LastContactThreshold"], "200ms");
    assert_eq!(conf["MaxTrailingLogs"], 250);
    assert_eq!(conf["MinQuorum"], 0);
    assert_eq!(conf["ServerStabilizationTime"], "10s");
    let index = conf["ModifyIndex"].as_u64().unwrap();

    // CAS: a stale index is refused, the current one applies, through a follower.
    let follower = nodes
        .iter()
        .find(|n| !leader.starts_with(&format!("{}:", n.ip)))
        .unwrap();
    let body = r#"{"CleanupDeadServers": false, "LastContactThreshold": "1s"}"#;
    let stale = follower
        .put(
            &format!("/v1/operator/autopilot/configuration?cas={}", index - 1),
            body,
        )
        .unwrap();
    assert_eq!((stale.status, stale.body.trim()), (200, "false"));
    let ok = follower
        .put(
            &format!("/v1/operator/autopilot/configuration?cas={index}"),
            body,
        )
        .unwrap();
    assert_eq!((ok.status, ok.body.trim()), (200, "true"));
    let bad = follower
        .put("/v1/operator/autopilot/configuration?cas=x", body)
        .unwrap();
    assert_eq!(bad.status, 400);
    assert!(
        bad.body.starts_with("Error parsing cas value"),
        "{}",
        bad.body
    );
    for n in nodes {
        assert!(
            eventually(Duration::from_secs(5), || json_of(
                n,
                "/v1/operator/autopilot/configuration?stale"
            )
            .is_some_and(
                |c| c["CleanupDeadServers"] == false && c["LastContactThreshold"] == "1s"
            )),
            "{} sees the new configuration",
            n.name
        );
    }

    // Health: all three servers, healthy, one failure tolerated.
    let mut health = Value::Null;
    assert!(
        eventually(Duration::from_secs(15), || {
            let Ok(r) = s2.get("/v1/operator/autopilot/health") else {
                return false;
            };
            health = r.json();
            r.status == 200 && health["Healthy"] == true
        }),
        "{health}"
    );
    assert_eq!(health["FailureTolerance"], 1);
    let servers = health["Servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3, "{health}");
    assert!(servers
        .iter()
        .all(|s| s["Healthy"] == true && s["Voter"] == true && s["SerfStatus"] == "alive"));
    assert_eq!(servers.iter().filter(|s| s["Leader"] == true).count(), 1);
    let leader_id = servers
        .iter()
        .find(|s| s["Leader"] == true)
        .and_then(|s| s["ID"].as_str())
        .unwrap()
        .to_string();

    let state = json_of(&s3, "/v1/operator/autopilot/state").unwrap();
    assert_eq!(state["Leader"], leader_id.as_str());
    assert_eq!(state["Voters"].as_array().unwrap().len(), 3);
    assert_eq!(state["Servers"][&leader_id]["Status"], "leader");

    // The CLI, against a follower.
    let addr = format!("-http-addr={}:8500", follower.ip);
    let (code, out, _) = cairn(&["operator", "autopilot", "get-config", &addr]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(
            "CleanupDeadServers = false\nLastContactThreshold = 1s\nMaxTrailingLogs = 250\n"
        ),
        "{out}"
    );
    assert!(out.contains("RedundancyZoneTag = \"\"\n"), "{out}");
    let (code, out, err) = cairn(&[
        "operator",
        "autopilot",
        "set-config",
        &addr,
        "-max-trailing-logs=300",
        "-cleanup-dead-servers=true",
    ]);
    assert_eq!(
        (code, out.as_str()),
        (0, "Configuration updated!\n"),
        "{err}"
    );
    let conf = json_of(follower, "/v1/operator/autopilot/configuration").unwrap();
    assert_eq!(conf["MaxTrailingLogs"], 300);
    assert_eq!(conf["CleanupDeadServers"], true);
    assert_eq!(conf["LastContactThreshold"], "1s", "other fields are kept");
    let (code, out, _) = cairn(&["operator", "autopilot", "state", &addr]);
    assert_eq!(code, 0);
    assert!(out.starts_with("Healthy:                      "), "{out}");
    assert!(
        out.contains(&format!("Leader:                       {leader_id}\n")),
        "{out}"
    );
    assert_eq!(
        out.matches("      Node Type:       voter\n").count(),
        3,
        "{out}"
    );

    // Transfer without a target: another server leads afterwards.
    let (code, out, err) = cairn(&["operator", "raft", "transfer-leader", &addr]);
    assert_eq!((code, out.as_str()), (0, "Success\n"), "{err}");
    let second = wait_leader(&nodes, Duration::from_secs(10)).expect("a leader");
    assert_ne!(second, leader, "leadership moved");

    // Transfer to a named server, through a server that does not lead.
    let target = nodes
        .iter()
        .find(|n| !second.starts_with(&format!("{}:", n.ip)))
        .unwrap();
    let target_id = json_of(target, "/v1/agent/self").unwrap()["Config"]["NodeID"]
        .as_str()
        .unwrap()
        .to_string();
    let via = nodes
        .iter()
        .find(|n| n.ip != target.ip && !second.starts_with(&format!("{}:", n.ip)))
        .copied()
        .unwrap_or(target);
    let r = via
        .put(
            &format!("/v1/operator/raft/transfer-leader?id={target_id}"),
            "",
        )
        .unwrap();
    assert_eq!(
        (r.status, r.json()),
        (200, serde_json::json!({"Success": true}))
    );
    let third = wait_leader(&nodes, Duration::from_secs(10)).expect("a leader");
    assert_eq!(by_addr(&nodes, &third).ip, target.ip);
    let r = s1
        .put("/v1/operator/raft/transfer-leader?id=nope", "")
        .unwrap();
    assert_eq!(r.status, 500);
    assert!(
        r.body.contains("Could not find address for server id nope"),
        "{}",
        r.body
    );

    // Writes work under the new leader.
    let r = s1.put("/v1/kv/after-transfer", "v").unwrap();
    assert_eq!(r.status, 200);
}

fn dev() -> TestAgent {
    TestAgent::dev_at("127.0.192.1", &[])
}

#[test]
fn transfer_on_a_single_server_fails_as_consuls() {
    let a = dev();
    let r = a.put("/v1/operator/raft/transfer-leader", "");
    assert_eq!(r.status, 500);
    assert_eq!(r.body, "rpc error: code = Unknown desc = cannot find peer");
    let (code, out, err) = cairn(&[
        "operator",
        "raft",
        "transfer-leader",
        &format!("-http-addr={}", a.base()),
    ]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.starts_with("Error transfering leadership: Failed to transfer leadership Unexpected response code: 500 (rpc error: code = Unknown desc = cannot find peer)"),
        "{err}"
    );
    // A lone healthy server: 200, tolerating no failure.
    let mut h = Value::Null;
    assert!(eventually(Duration::from_secs(10), || {
        let r = a.get_ok("/v1/operator/autopilot/health");
        h = r.json();
        r.status == 200
    }));
    assert_eq!(h["FailureTolerance"], 0);
    assert_eq!(h["Servers"][0]["Leader"], true);
}

#[test]
fn usage_counts_the_catalog() {
    let a = dev();
    for (id, name, kind, node) in [
        ("web1", "web", "", "n1"),
        ("web2", "web", "", "n2"),
        ("proxy", "web-sidecar-proxy", "connect-proxy", "n1"),
    ] {
        let body = format!(
            r#"{{"Node":"{node}","Address":"10.0.0.1","Service":{{"ID":"{id}","Service":"{name}","Kind":"{kind}","Port":80{}}}}}"#,
            if kind.is_empty() {
                String::new()
            } else {
                r#","Proxy":{"DestinationServiceName":"web"}"#.to_string()
            }
        );
        let r = a.put("/v1/catalog/register", &body);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = a.get_ok("/v1/operator/usage");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.index() > 0);
    let v = r.json();
    let dc = &v["Usage"]["dc1"];
    // The agent's own node and its `consul` service count too.
    assert_eq!(dc["Nodes"], 3, "{v}");
    assert_eq!(dc["Services"], 3, "{v}");
    assert_eq!(dc["ServiceInstances"], 4, "{v}");
    assert_eq!(dc["BillableServiceInstances"], 2, "{v}");
    assert_eq!(dc["ConnectServiceInstances"]["connect-proxy"], 1, "{v}");
    assert_eq!(dc["ConnectServiceInstances"]["mesh-gateway"], 0, "{v}");
    assert_eq!(v["KnownLeader"], true);
}

#[test]
fn config_entries_crud_cas_errors_and_cli() {
    let a = dev();
    let put = |path: &str, body: &str| a.put(path, body);
    let r = put(
        "/v1/config",
        r#"{"Kind":"service-defaults","Name":"web","Protocol":"http"}"#,
    );
    assert_eq!((r.status, r.body.trim()), (200, "true"));
    let r = a.get_ok("/v1/config/service-defaults/web");
    assert_eq!(r.status, 200);
    let e = r.json();
    assert_eq!(e["Kind"], "service-defaults");
    assert_eq!(e["Name"], "web");
    assert_eq!(e["Protocol"], "http");
    let modify = e["ModifyIndex"].as_u64().unwrap();
    assert!(modify > 0 && e["CreateIndex"] == modify);
    assert_eq!(r.index(), modify);

    // CAS on write: a stale index is refused, the current one applies.
    let body = r#"{"Kind":"service-defaults","Name":"web","Protocol":"grpc"}"#;
    let r = put(&format!("/v1/config?cas={}", modify - 1), body);
    assert_eq!(r.body.trim(), "false");
    let r = put(&format!("/v1/config?cas={modify}"), body);
    assert_eq!(r.body.trim(), "true");
    let e = a.get_ok("/v1/config/service-defaults/web").json();
    assert_eq!(e["Protocol"], "grpc");
    assert_eq!(e["CreateIndex"], modify);
    let modify = e["ModifyIndex"].as_u64().unwrap();

    let r = put(
        "/v1/config",
        r#"{"Kind":"proxy-defaults","Name":"global","Config":{"protocol":"http"}}"#,
    );
    assert_eq!(r.body.trim(), "true");
    let list = a.get_ok("/v1/config/service-defaults").json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["Name"], "web");

    // Consul's errors.
    let r = put("/v1/config", r#"{"Kind":"nope","Name":"x"}"#);
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            400,
            "Request decoding failed: invalid config entry kind: nope"
        )
    );
    let r = put("/v1/config", r#"{"Kind":"service-defaults"}"#);
    assert_eq!((r.status, r.body.as_str()), (400, "Name is required"));
    let r = put("/v1/config", r#"{"Kind":"proxy-defaults","Name":"web"}"#);
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, r#"invalid name ("web"), only "global" is supported"#)
    );
    let r = put("/v1/config", r#"{"Name":"web"}"#);
    assert_eq!(r.status, 400);
    let r = a.get_ok("/v1/config/service-defaults/api");
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            404,
            r#"Config entry not found for "service-defaults" / "api""#
        )
    );
    let r = a.get_ok("/v1/config/nope");
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "invalid config entry kind: nope")
    );

    // Delete: CAS refuses a stale index; a plain delete answers {}.
    let r = a.delete(&format!(
        "/v1/config/service-defaults/web?cas={}",
        modify - 1
    ));
    assert_eq!(r.body.trim(), "false");
    let r = a.delete("/v1/config/proxy-defaults/global");
    assert_eq!((r.status, r.body.trim()), (200, "{}"));
    assert_eq!(a.get_ok("/v1/config/proxy-defaults/global").status, 404);
    let r = a.delete(&format!("/v1/config/service-defaults/web?cas={modify}"));
    assert_eq!(r.body.trim(), "true");
    assert_eq!(a.get_ok("/v1/config/service-defaults/web").status, 404);

    // The CLI.
    let addr = format!("-http-addr={}", a.base());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("entry.json");
    std::fs::write(
        &file,
        r#"{"Kind":"service-resolver","Name":"api","ConnectTimeout":"5s"}"#,
    )
    .unwrap();
    let file = file.to_string_lossy().into_owned();
    let (code, out, err) = cairn(&["config", "write", &addr, &file]);
    assert_eq!(
        (code, out.as_str()),
        (0, "Config entry written: service-resolver/api\n"),
        "{err}"
    );
    let (code, out, _) = cairn(&[
        "config",
        "read",
        &addr,
        "-kind",
        "service-resolver",
        "-name",
        "api",
    ]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ConnectTimeout"], "5s");
    assert!(
        out.contains("\n    \"Kind\": \"service-resolver\""),
        "{out}"
    );
    let (code, out, _) = cairn(&["config", "list", &addr, "-kind", "service-resolver"]);
    assert_eq!((code, out.as_str()), (0, "api\n"));
    let (code, _, err) = cairn(&["config", "write", &addr, "-cas", "-modify-index=1", &file]);
    assert_eq!(code, 1);
    assert_eq!(err, "Config entry not updated: service-resolver/api\n");
    let (code, _, err) = cairn(&["config", "read", &addr, "-kind", "service-resolver"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "Must specify the -name parameter\n")
    );
    let (code, out, _) = cairn(&[
        "config",
        "delete",
        &addr,
        "-kind=service-resolver",
        "-name=api",
    ]);
    assert_eq!(
        (code, out.as_str()),
        (0, "Config entry deleted: service-resolver/api\n")
    );
    let (code, _, err) = cairn(&[
        "config",
        "read",
        &addr,
        "-kind=service-resolver",
        "-name=api",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with(
            "Error reading config entry service-resolver/api: Unexpected response code: 404"
        ),
        "{err}"
    );
}

#[test]
fn discovery_chain_is_compiled_from_config_entries() {
    let a = TestAgent::dev_at("127.0.192.2", &[]);
    let post = |body: &str| {
        a.request(
            "POST",
            "/v1/discovery-chain/web",
            Some(body.as_bytes()),
            &[],
        )
        .expect("POST")
    };
    let chain = |method: &str, body: Option<&str>| {
        let r = match (method, body) {
            ("GET", _) => a.get_ok("/v1/discovery-chain/web"),
            (_, b) => post(b.unwrap_or("")),
        };
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()["Chain"].clone()
    };
    let c = chain("GET", None);
    assert_eq!(c["ServiceName"], "web");
    assert_eq!(c["Datacenter"], "dc1");
    assert_eq!(c["Protocol"], "tcp");
    assert_eq!(c["Default"], true);
    assert_eq!(c["StartNode"], "resolver:web.default.default.dc1");
    let node = &c["Nodes"]["resolver:web.default.default.dc1"];
    assert_eq!(node["Type"], "resolver");
    assert_eq!(node["Resolver"]["Target"], "web.default.default.dc1");
    assert_eq!(node["Resolver"]["ConnectTimeout"], "5s");
    assert_eq!(c["Targets"]["web.default.default.dc1"]["Service"], "web");

    // The service's defaults and resolver change what is compiled.
    for entry in [
        r#"{"Kind":"service-defaults","Name":"web","Protocol":"http"}"#,
        r#"{"Kind":"service-resolver","Name":"web","ConnectTimeout":"12s"}"#,
    ] {
        let r = a.put("/v1/config", entry);
        assert_eq!((r.status, r.body.trim()), (200, "true"));
    }
    let c = chain("GET", None);
    assert_eq!(c["Protocol"], "http");
    assert_eq!(c.get("Default"), None, "{c}");
    assert_eq!(
        c["Nodes"]["resolver:web.default.default.dc1"]["Resolver"]["ConnectTimeout"],
        "12s"
    );

    // Overrides in a POST body win and make a customized chain.
    let c = chain(
        "POST",
        Some(r#"{"OverrideProtocol":"grpc","OverrideConnectTimeout":"3s"}"#),
    );
    assert_eq!(c["Protocol"], "grpc");
    assert_eq!(
        c["CustomizationHash"].as_str().map(str::len),
        Some(8),
        "{c}"
    );
    assert_eq!(
        c["Targets"]["web.default.default.dc1"]["ConnectTimeout"],
        "3s"
    );
    let r = post(r#"{"OverrideConnectTimeout":"soon"}"#);
    assert_eq!(r.status, 400, "{}", r.body);
    let r = a.get_ok("/v1/discovery-chain/web?compile-dc=dc9");
    assert_eq!((r.status, r.body.as_str()), (500, "No path to datacenter"));
}
