//! Network coordinates against the real binary: a server and two client
//! agents measure each other over gossip and their coordinates reach
//! `/v1/coordinate/nodes` within seconds; coordinates set with
//! `PUT /v1/coordinate/update` order the catalog and health reads under
//! `?near=`; an unknown node is a 404; deregistering a node drops its
//! coordinate; `cairn rtt` prints Consul's texts with its exit codes; and
//! under ACLs reads are filtered by `node:read` and updates need
//! `node:write`.

mod common;

use common::acl::{acl_conf, add_config, call, denial, req, token_with, wait_acl_ready};
use common::cluster::{wait_leader, Node};
use common::{eventually, BIN};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const NET: u8 = 187;
const ACL_NET: u8 = 188;
const ROOT: &str = "5f0c2a1e9b8d47c6a3e2d1c0b9a8f7e6";

/// `cairn <args>`: exit code, stdout, stderr.
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .output()
        .expect("run cairn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn coordinates(n: &Node) -> Vec<Value> {
    let r = n.get("/v1/coordinate/nodes").expect("coordinate/nodes");
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().as_array().cloned().unwrap_or_default()
}

/// A coordinate that gossip has moved: less than the fresh error of 1.5,
/// or off the origin.
fn measured(c: &Value) -> bool {
    let coord = &c["Coord"];
    let error = coord["Error"].as_f64().unwrap_or(1.5);
    let moved = coord["Vec"]
        .as_array()
        .is_some_and(|v| v.iter().any(|x| x.as_f64() != Some(0.0)));
    coord["Vec"].as_array().map(Vec::len) == Some(8) && (error < 1.5 || moved)
}

fn register(n: &Node, node: &str) {
    let body = json!({
        "Node": node,
        "Address": "10.9.9.9",
        "Service": {"ID": "web", "Service": "web", "Port": 80},
    });
    let r = n.put("/v1/catalog/register", &body.to_string()).unwrap();
    assert_eq!(r.status, 200, "register {node}: {}", r.body);
}

/// A coordinate `x` seconds out on the first axis, with 1 ms of height.
fn place(n: &Node, node: &str, x: f64) {
    let mut vec = vec![0.0; 8];
    vec[0] = x;
    let body = json!({
        "Node": node,
        "Coord": {"Vec": vec, "Error": 0.2, "Adjustment": 0.0, "Height": 0.001},
    });
    let r = n.put("/v1/coordinate/update", &body.to_string()).unwrap();
    assert_eq!(r.status, 200, "update {node}: {}", r.body);
    assert!(r.body.is_empty(), "{}", r.body);
}

fn names(v: &Value, pick: impl Fn(&Value) -> Option<&str>) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|e| pick(e).map(str::to_string))
        .collect()
}

fn catalog_nodes(n: &Node, query: &str) -> Vec<String> {
    let r = n.get(&format!("/v1/catalog/nodes?{query}")).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    names(&r.json(), |e| e["Node"].as_str())
        .into_iter()
        .filter(|n| n.starts_with("n-"))
        .collect()
}

fn catalog_service(n: &Node, query: &str) -> Vec<String> {
    let r = n.get(&format!("/v1/catalog/service/web?{query}")).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    names(&r.json(), |e| e["Node"].as_str())
}

fn health_service(n: &Node, query: &str) -> Vec<String> {
    let r = n.get(&format!("/v1/health/service/web?{query}")).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    names(&r.json(), |e| e["Node"]["Node"].as_str())
}

/// Consul's timings send a coordinate every 15-30 s and batch them every
/// 5 s; the tests shorten both through Consul's config keys.
fn fast_coordinates(n: &mut Node) {
    add_config(
        n,
        "coordinates.json",
        &json!({
            "sync_coordinate_interval_min": "1s",
            "consul": {"coordinate": {"update_period": "500ms"}}
        }),
    );
}

#[test]
fn coordinates_from_gossip_near_sorting_and_rtt() {
    let mut s1 = Node::server(NET, 1, 1, &[], &[]);
    let mut c2 = Node::client(NET, 2, &[1], &[]);
    let mut c3 = Node::client(NET, 3, &[1], &[]);
    for n in [&mut s1, &mut c2, &mut c3] {
        fast_coordinates(n);
        n.spawn();
    }
    assert!(
        wait_leader(&[&s1, &c2, &c3], Duration::from_secs(20)).is_some(),
        "no leader; log:\n{}",
        s1.log_text()
    );

    // Every agent's coordinate, measured by gossip, reaches the servers.
    let started = Instant::now();
    let all_measured = || {
        let cs = coordinates(&s1);
        ["s1", "c2", "c3"]
            .iter()
            .all(|name| cs.iter().any(|c| c["Node"] == *name && measured(c)))
    };
    assert!(
        eventually(Duration::from_secs(15), all_measured),
        "coordinates: {:?}\nlog:\n{}",
        coordinates(&s1),
        s1.log_text()
    );
    eprintln!("coordinates measured after {:?}", started.elapsed());
    // /v1/agent/self reports the agent's own current coordinate.
    let me = s1.get("/v1/agent/self").unwrap().json();
    assert!(measured(&json!({"Coord": me["Coord"]})), "{}", me["Coord"]);
    let metrics = s1.get("/v1/agent/metrics?format=prometheus").unwrap().body;
    assert!(
        metrics.contains("consul_serf_coordinate_adjustment_ms"),
        "{metrics}"
    );
    // A client agent reads the same table (its view is fed by the server).
    assert!(eventually(Duration::from_secs(5), || {
        let cs = coordinates(&c2);
        ["s1", "c2", "c3"]
            .iter()
            .all(|name| cs.iter().any(|c| c["Node"] == *name))
    }));
    let one = s1.get("/v1/coordinate/node/c3").unwrap();
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(one.index() > 0);
    assert_eq!(one.json()[0]["Node"], "c3");
    assert_eq!(one.json()[0]["Segment"], "");

    // Unknown node: a bare 404, as Consul answers it.
    let missing = s1.get("/v1/coordinate/node/nope").unwrap();
    assert_eq!((missing.status, missing.body.as_str()), (404, ""));

    // Datacenters: this DC's server by its WAN name, in area "wan".
    let dcs = s1.get("/v1/coordinate/datacenters").unwrap().json();
    assert_eq!(dcs[0]["Datacenter"], "dc1");
    assert_eq!(dcs[0]["AreaID"], "wan");
    assert_eq!(
        dcs[0]["Coordinates"][0]["Node"], "s1",
        "the datacenter suffix of WAN names is stripped, as in Consul"
    );
    assert_eq!(dcs[0]["Coordinates"].as_array().unwrap().len(), 1);

    // Coordinates of another dimensionality are refused.
    let bad = json!({"Node": "c2", "Coord": {"Vec": [0.0, 1.0], "Error": 1.5, "Adjustment": 0, "Height": 0}});
    let r = s1.put("/v1/coordinate/update", &bad.to_string()).unwrap();
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "incompatible coordinate")
    );

    // Deterministic coordinates for four external nodes, one through the
    // client agent (forwarded to the server), one never placed. The
    // agents themselves sit within milliseconds of the origin.
    for node in ["n-none", "n-far", "n-mid", "n-near"] {
        register(&s1, node);
    }
    place(&s1, "n-far", 5.0);
    place(&c2, "n-mid", 1.0);
    place(&s1, "n-near", 0.1);
    assert!(
        eventually(Duration::from_secs(10), || {
            ["n-far", "n-mid", "n-near"].iter().all(|n| {
                c2.get(&format!("/v1/coordinate/node/{n}"))
                    .is_ok_and(|r| r.status == 200)
            })
        }),
        "placed coordinates never showed up: {:?}",
        coordinates(&s1)
    );

    let by_distance = ["n-near", "n-mid", "n-far", "n-none"];
    // Without ?near the order is by node name.
    assert_eq!(
        catalog_service(&s1, ""),
        ["n-far", "n-mid", "n-near", "n-none"]
    );
    for agent in [&s1, &c2] {
        assert_eq!(catalog_nodes(agent, "near=_agent"), by_distance);
        assert_eq!(catalog_service(agent, "near=_agent"), by_distance);
        assert_eq!(health_service(agent, "near=_agent"), by_distance);
    }
    let from_far = ["n-far", "n-mid", "n-near", "n-none"];
    assert_eq!(catalog_service(&s1, "near=n-far"), from_far);
    assert_eq!(health_service(&c2, "near=n-far"), from_far);
    // A source without a coordinate leaves the order as it was.
    assert_eq!(
        catalog_service(&s1, "near=n-none"),
        ["n-far", "n-mid", "n-near", "n-none"]
    );

    // cairn rtt: Consul's texts and exit codes.
    let http = format!("-http-addr={}:8500", s1.ip);
    let (code, _, err) = cli(&["rtt", &http]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("One or two node names must be specified\n\nUsage: cairn rtt"),
        "{err}"
    );
    let (code, out, err) = cli(&["rtt", &http, "n-near", "n-far"]);
    assert_eq!(code, 0, "{err}");
    // 4.9 s apart on the first axis plus 1 ms of height each.
    assert_eq!(
        out,
        "Estimated n-near <-> n-far rtt: 4902.000 ms (using LAN coordinates)\n"
    );
    let (code, out, _) = cli(&["rtt", &http, "n-mid"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("Estimated n-mid <-> s1 rtt: ")
            && out.ends_with(" ms (using LAN coordinates)\n"),
        "{out}"
    );
    let (code, out, err) = cli(&["rtt", &http, "n-none", "n-far"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "Could not find a coordinate for node \"n-none\"\n");
    let (code, _, err) = cli(&["rtt", &http, "n-far", "nope"]);
    assert_eq!(code, 1);
    assert_eq!(err, "Could not find a coordinate for node \"nope\"\n");
    let (code, out, err) = cli(&["rtt", &http, "-wan", "s1.dc1"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("Estimated s1.dc1 <-> s1.dc1 rtt: ")
            && out.ends_with("(using WAN coordinates)\n"),
        "{out}"
    );

    // Deregistering a node drops its coordinate; a blocking read wakes.
    let idx = s1.get("/v1/coordinate/nodes").unwrap().index();
    let waiter = {
        let ip = s1.ip.clone();
        std::thread::spawn(move || {
            let url = format!("http://{ip}:8500/v1/coordinate/nodes?index={idx}&wait=10s");
            let started = Instant::now();
            let r = common::http_request("GET", &url, None, &[]).unwrap();
            (r.index(), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let r = s1
        .put(
            "/v1/catalog/deregister",
            &json!({"Node": "n-mid"}).to_string(),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let (woke_at, took) = waiter.join().unwrap();
    assert!(
        woke_at > idx,
        "blocking read returned index {woke_at} <= {idx}"
    );
    assert!(took < Duration::from_secs(9), "blocking read took {took:?}");
    assert_eq!(s1.get("/v1/coordinate/node/n-mid").unwrap().status, 404);
}

fn placement(node: &str, x: f64) -> String {
    let mut vec = vec![0.0; 8];
    vec[0] = x;
    json!({"Node": node, "Coord": {"Vec": vec, "Error": 0.2, "Adjustment": 0.0, "Height": 0.001}})
        .to_string()
}

#[test]
fn acls_filter_coordinates_by_node_read_and_updates_need_node_write() {
    let mut s1 = Node::server(ACL_NET, 1, 1, &[], &[]);
    fast_coordinates(&mut s1);
    let tokens = json!({"initial_management": ROOT, "agent": ROOT});
    add_config(&mut s1, "acl.json", &acl_conf("deny", tokens.clone()));
    s1.spawn();
    wait_acl_ready(&s1);
    // A client agent whose syncs carry its agent token through the server.
    let mut c2 = Node::client(ACL_NET, 2, &[1], &[]);
    fast_coordinates(&mut c2);
    add_config(&mut c2, "acl.json", &acl_conf("deny", tokens));
    c2.spawn();

    for node in ["n-a", "n-b"] {
        let body = json!({"Node": node, "Address": "10.9.9.9"}).to_string();
        let r = req(&s1, "PUT", "/v1/catalog/register", Some(&body), Some(ROOT));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let (accessor, secret) = token_with(
        &s1,
        ROOT,
        "n-a-writer",
        r#"node_prefix "n-a" { policy = "write" }"#,
    );
    let r = req(
        &s1,
        "PUT",
        "/v1/coordinate/update",
        Some(&placement("n-a", 0.5)),
        Some(&secret),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = req(
        &s1,
        "PUT",
        "/v1/coordinate/update",
        Some(&placement("n-b", 0.7)),
        Some(&secret),
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.body, denial(&accessor, "node:write", "n-b"));
    // The same refusal when the update goes through the client agent.
    let r = eventually(Duration::from_secs(20), || {
        call(
            &c2,
            "PUT",
            "/v1/coordinate/update",
            Some(&placement("n-b", 0.7)),
            Some(&secret),
        )
        .is_some_and(|r| r.status == 403)
    });
    assert!(r, "client agent did not refuse; log:\n{}", c2.log_text());
    let r = req(
        &s1,
        "PUT",
        "/v1/coordinate/update",
        Some(&placement("n-b", 0.7)),
        Some(ROOT),
    );
    assert_eq!(r.status, 200, "{}", r.body);

    let all_there = eventually(Duration::from_secs(15), || {
        call(&s1, "GET", "/v1/coordinate/nodes", None, Some(ROOT)).is_some_and(|r| {
            let got = names(&r.json(), |e| e["Node"].as_str());
            ["n-a", "n-b", "s1", "c2"]
                .iter()
                .all(|n| got.iter().any(|g| g == n))
        })
    });
    assert!(
        all_there,
        "coordinates: {:?}\nclient log:\n{}",
        req(&s1, "GET", "/v1/coordinate/nodes", None, Some(ROOT)).body,
        c2.log_text()
    );

    let r = req(&s1, "GET", "/v1/coordinate/nodes", None, Some(&secret));
    assert_eq!(r.status, 200);
    assert_eq!(names(&r.json(), |e| e["Node"].as_str()), ["n-a"]);
    assert_eq!(r.header("X-Consul-Results-Filtered-By-ACLs"), Some("true"));
    // A node the token cannot read is as absent as an unknown one.
    let r = req(&s1, "GET", "/v1/coordinate/node/n-b", None, Some(&secret));
    assert_eq!((r.status, r.body.as_str()), (404, ""));
    let r = req(&s1, "GET", "/v1/coordinate/node/n-a", None, Some(&secret));
    assert_eq!(r.status, 200, "{}", r.body);
}
