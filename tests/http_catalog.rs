//! The catalog, health, status and operator endpoints over real sockets,
//! and the cross-cutting wire rules (headers, 404/405, blocking).

mod common;

use common::TestAgent;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn register_ext(a: &TestAgent) {
    let body = json!({
        "Node": "ext1",
        "Address": "10.1.2.3",
        "NodeMeta": {"rack": "r1"},
        "Service": {"Service": "db", "Tags": ["primary", "v1"], "Port": 5432},
        "Check": {"Name": "db alive", "ServiceID": "db"}
    });
    let r = a.put("/v1/catalog/register", &body.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!(true));
}

#[test]
fn catalog_register_is_visible_in_every_read() {
    let a = TestAgent::dev();
    register_ext(&a);

    let nodes = a.get_ok("/v1/catalog/nodes").json();
    let names: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["Node"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"ext1") && names.contains(&"node1"),
        "{names:?}"
    );

    let services = a.get_ok("/v1/catalog/services").json();
    assert_eq!(services["db"], json!(["primary", "v1"]));
    assert_eq!(services["consul"], json!([]));

    let rows = a.get_ok("/v1/catalog/service/db").json();
    assert_eq!(rows[0]["Node"], "ext1");
    assert_eq!(rows[0]["Address"], "10.1.2.3");
    assert_eq!(rows[0]["ServiceID"], "db");
    assert_eq!(rows[0]["ServicePort"], 5432);
    assert_eq!(rows[0]["NodeMeta"]["rack"], "r1");
    assert_eq!(
        rows[0]["ServiceWeights"],
        json!({"Passing": 1, "Warning": 1})
    );

    let node = a.get_ok("/v1/catalog/node/ext1").json();
    assert_eq!(node["Node"]["Address"], "10.1.2.3");
    assert_eq!(node["Services"]["db"]["Tags"], json!(["primary", "v1"]));

    let list = a.get_ok("/v1/catalog/node-services/ext1").json();
    assert_eq!(list["Services"][0]["ID"], "db");

    // A catalog check without Status starts critical; its ID defaults to the name.
    let checks = a.get_ok("/v1/health/checks/db").json();
    assert_eq!(checks[0]["CheckID"], "db alive");
    assert_eq!(checks[0]["Status"], "critical");
    let crit = a.get_ok("/v1/health/state/critical").json();
    assert!(crit
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["CheckID"] == "db alive"));
    let passing = a.get_ok("/v1/health/state/passing").json();
    assert!(passing
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["Status"] == "passing"));

    // node-meta filter
    let filtered = a.get_ok("/v1/catalog/nodes?node-meta=rack:r1").json();
    assert_eq!(filtered.as_array().unwrap().len(), 1);
}

#[test]
fn service_tag_filter_is_and_and_case_insensitive() {
    let a = TestAgent::dev();
    register_ext(&a);
    assert_eq!(
        a.get_ok("/v1/catalog/service/db?tag=primary&tag=v1")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        a.get_ok("/v1/catalog/service/db?tag=PRIMARY")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        a.get_ok("/v1/catalog/service/db?tag=primary&tag=v2").json(),
        json!([])
    );
    assert_eq!(
        a.get_ok("/v1/health/service/db?tag=v1")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn unknown_things_are_null_or_empty_lists_not_errors() {
    let a = TestAgent::dev();
    let r = a.get_ok("/v1/catalog/node/nope");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.trim(), "null");
    assert!(r.index() >= 1);
    assert_eq!(a.get_ok("/v1/catalog/service/nope").json(), json!([]));
    assert_eq!(a.get_ok("/v1/health/service/nope").json(), json!([]));
    assert_eq!(a.get_ok("/v1/health/checks/nope").json(), json!([]));
    assert_eq!(a.get_ok("/v1/health/node/nope").json(), json!([]));
    assert_eq!(
        a.get_ok("/v1/catalog/node-services/nope").body.trim(),
        "null"
    );
}

#[test]
fn catalog_deregister_removes_service_then_node() {
    let a = TestAgent::dev();
    register_ext(&a);
    let r = a.put(
        "/v1/catalog/deregister",
        r#"{"Node":"ext1","ServiceID":"db"}"#,
    );
    assert_eq!(r.json(), json!(true));
    assert_eq!(a.get_ok("/v1/catalog/service/db").json(), json!([]));
    assert!(a.get_ok("/v1/catalog/node/ext1").json().is_object());
    a.put("/v1/catalog/deregister", r#"{"Node":"ext1"}"#);
    assert_eq!(a.get_ok("/v1/catalog/node/ext1").body.trim(), "null");
}

#[test]
fn catalog_register_validation() {
    let a = TestAgent::dev();
    let r = a.put("/v1/catalog/register", r#"{"Address":"10.0.0.1"}"#);
    assert_eq!((r.status, r.body.as_str()), (500, "Must provide node"));
    let r = a.put("/v1/catalog/register", r#"{"Node":"x"}"#);
    assert_eq!(r.status, 500);
    assert!(r.body.starts_with("Must provide address"), "{}", r.body);
    let r = a.put(
        "/v1/catalog/register",
        r#"{"Node":"x","Address":"1.2.3.4","Bogus":1}"#,
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, r#"Request decode failed: json: unknown field "Bogus""#)
    );
    let r = a.put("/v1/catalog/deregister", "{}");
    assert_eq!((r.status, r.body.as_str()), (500, "Must provide node"));
}

#[test]
fn read_headers_follow_consul() {
    let a = TestAgent::dev();
    let r = a.get_ok("/v1/catalog/services");
    assert_eq!(r.header("Content-Type"), Some("application/json"));
    assert_eq!(r.header("X-Consul-KnownLeader"), Some("true"));
    assert_eq!(r.header("X-Consul-LastContact"), Some("0"));
    assert_eq!(r.header("X-Consul-Effective-Consistency"), Some("leader"));
    assert_eq!(r.header("X-Consul-Default-ACL-Policy"), Some("allow"));
    let before = r.index();
    assert!(before >= 1);
    register_ext(&a);
    let after = a.get_ok("/v1/catalog/services").index();
    assert!(after > before, "{after} > {before}");

    let r = a.get_ok("/v1/catalog/nodes?stale");
    assert_eq!(r.header("X-Consul-Effective-Consistency"), Some("stale"));
    let r = a.get_ok("/v1/catalog/nodes?consistent=");
    assert_eq!(
        r.header("X-Consul-Effective-Consistency"),
        Some("consistent")
    );
    let r = a.get_ok("/v1/catalog/nodes?stale&consistent");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        "Cannot specify ?stale with ?consistent, conflicting semantics."
    );
}

#[test]
fn dev_mode_responses_are_pretty_json() {
    let a = TestAgent::dev();
    let r = a.get_ok("/v1/catalog/datacenters?pretty");
    assert_eq!(r.body, "[\n    \"dc1\"\n]\n");
}

#[test]
fn unknown_paths_and_wrong_methods() {
    let a = TestAgent::dev();
    let r = a.get_ok("/v1/nope/nothing");
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, "Invalid URL path: not a recognized HTTP API endpoint")
    );

    let r = a.request("DELETE", "/v1/catalog/nodes", None, &[]).unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("OPTIONS,GET"));
    assert_eq!(r.body, "method DELETE not allowed");

    let r = a.get_ok("/v1/catalog/register");
    assert_eq!((r.status, r.header("Allow")), (405, Some("OPTIONS,PUT")));

    let r = a.request("OPTIONS", "/v1/kv/x", None, &[]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Allow"), Some("OPTIONS,GET,PUT,DELETE"));
}

#[test]
fn bad_query_values_are_400() {
    let a = TestAgent::dev();
    let r = a.get_ok("/v1/catalog/services?wait=soon");
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid wait time"));
    let r = a.get_ok("/v1/catalog/services?index=abc");
    assert_eq!((r.status, r.body.as_str()), (400, "Invalid index"));
    let r = a.get_ok("/v1/health/service/consul?passing=maybe");
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Invalid value for ?passing")
    );
    assert_eq!(
        a.get_ok("/v1/health/service/consul?passing=false").status,
        200
    );
    assert_eq!(a.get_ok("/v1/health/service/consul?passing").status, 200);
    // Consul matches the state as given: an unknown one matches nothing.
    assert_eq!(a.get_ok("/v1/health/state/bogus").json(), json!([]));
    let r = a.get_ok("/v1/catalog/nodes?dc=elsewhere");
    assert_eq!((r.status, r.body.as_str()), (500, "No path to datacenter"));
    assert_eq!(a.get_ok("/v1/catalog/nodes?dc=dc1").status, 200);
}

#[test]
fn blocking_query_waits_for_a_change() {
    let a = TestAgent::dev();
    let idx = a.get_ok("/v1/catalog/services").index();

    // Times out with the same index when nothing changes.
    let t = Instant::now();
    let r = a.get_ok(&format!("/v1/catalog/services?index={idx}&wait=300ms"));
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.index(), idx);

    // Returns as soon as the catalog changes.
    let base = a.base();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        reqwest::blocking::Client::new()
            .put(format!("{base}/v1/catalog/register"))
            .body(r#"{"Node":"late","Address":"10.9.9.9","Service":{"Service":"late"}}"#)
            .send()
            .unwrap();
    });
    let t = Instant::now();
    let r = a.get_ok(&format!("/v1/catalog/services?index={idx}&wait=10s"));
    writer.join().unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(300) && t.elapsed() < Duration::from_secs(8),
        "{:?}",
        t.elapsed()
    );
    assert!(r.index() > idx);
    assert!(r.json()["late"].is_array());
}

#[test]
fn status_and_raft_configuration() {
    let a = TestAgent::dev();
    let leader = a.get_ok("/v1/status/leader").json();
    assert_eq!(leader, json!(format!("127.0.0.1:{}", a.ports.server)));
    assert_eq!(
        a.get_ok("/v1/status/peers").json(),
        json!([format!("127.0.0.1:{}", a.ports.server)])
    );
    assert_eq!(a.get_ok("/v1/catalog/datacenters").json(), json!(["dc1"]));

    let cfg = a.get_ok("/v1/operator/raft/configuration").json();
    let s = &cfg["Servers"][0];
    assert_eq!(s["Node"], "node1");
    assert_eq!(s["Leader"], true);
    assert_eq!(s["Voter"], true);
    assert_eq!(s["ProtocolVersion"], "3");
    assert_eq!(s["Address"], json!(format!("127.0.0.1:{}", a.ports.server)));
    let node = a.get_ok("/v1/catalog/node/node1").json();
    assert_eq!(s["ID"], node["Node"]["ID"]);
    // Consul reports 0 here (raft leaves the future's index unset).
    assert_eq!(cfg["Index"], json!(0));
}

#[test]
fn health_service_entries_carry_node_and_checks() {
    let a = TestAgent::dev();
    let v: Value = a.get_ok("/v1/health/service/consul").json();
    let e = &v[0];
    assert_eq!(e["Node"]["Node"], "node1");
    assert!(e["Node"]["ID"].as_str().unwrap().len() == 36);
    assert_eq!(e["Service"]["Service"], "consul");
    assert_eq!(e["Checks"][0]["CheckID"], "serfHealth");
    assert_eq!(e["Checks"][0]["ServiceTags"], json!([]));
}
