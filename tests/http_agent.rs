//! The agent endpoints over real sockets: registration as py-consul,
//! node-consul and the Go client send it, TTL checks, maintenance, identity
//! and leave.

mod common;

use common::{eventually, TestAgent};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn passing_count(a: &TestAgent, svc: &str) -> usize {
    a.get_ok(&format!("/v1/health/service/{svc}?passing"))
        .json()
        .as_array()
        .map(|v| v.len())
        .unwrap_or(0)
}

#[test]
fn lowercase_registration_like_py_consul() {
    let a = TestAgent::dev();
    let body = json!({
        "name": "web", "id": "web1", "port": 80, "tags": ["a"], "address": "10.0.0.5",
        "meta": {"Version": "1"}, "enabletagoverride": true,
        "check": {"ttl": "10s", "deregistercriticalserviceafter": "1m"}
    });
    let r = a.put("/v1/agent/service/register", &body.to_string());
    assert_eq!((r.status, r.body.as_str()), (200, ""));

    let services = a.get_ok("/v1/agent/services").json();
    let s = &services["web1"];
    assert_eq!(s["Service"], "web");
    assert_eq!(s["Port"], 80);
    assert_eq!(s["Tags"], json!(["a"]));
    assert_eq!(s["Meta"], json!({"Version": "1"}));
    assert_eq!(s["EnableTagOverride"], true);
    assert_eq!(s["Weights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(s["Datacenter"], "dc1");
    assert_eq!(
        s["TaggedAddresses"]["lan_ipv4"],
        json!({"Address": "10.0.0.5", "Port": 80})
    );

    let checks = a.get_ok("/v1/agent/checks").json();
    let c = &checks["service:web1"];
    assert_eq!(c["Name"], "Service 'web' check");
    assert_eq!(c["Status"], "critical");
    assert_eq!(c["Type"], "ttl");
    assert_eq!(c["ServiceID"], "web1");

    // Synced to the catalog at once.
    let rows = a.get_ok("/v1/catalog/service/web").json();
    assert_eq!(rows[0]["ServiceID"], "web1");
    assert_eq!(rows[0]["ServiceAddress"], "10.0.0.5");
}

#[test]
fn camel_case_and_snake_case_registration() {
    let a = TestAgent::dev();
    let body = json!({
        "Name": "api", "Port": 8080,
        "enable_tag_override": true,
        "tagged_addresses": {"wan": {"address": "1.2.3.4", "port": 443}},
        "Checks": [
            {"CheckID": "api-ttl", "TTL": "30s", "Status": "passing"},
            {"Name": "second", "ttl": 5000000000u64, "deregister_critical_service_after": "90m"},
            {"TTL": "1m"}
        ],
        "Weights": {"Passing": 10, "Warning": 2}
    });
    let r = a.put("/v1/agent/service/register", &body.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    let s = &a.get_ok("/v1/agent/services").json()["api"];
    assert_eq!(s["EnableTagOverride"], true);
    assert_eq!(
        s["TaggedAddresses"]["wan"],
        json!({"Address": "1.2.3.4", "Port": 443})
    );
    assert_eq!(s["Weights"], json!({"Passing": 10, "Warning": 2}));
    let checks = a.get_ok("/v1/agent/checks").json();
    assert_eq!(checks["api-ttl"]["Status"], "passing");
    assert_eq!(checks["service:api:2"]["Name"], "second");
    assert_eq!(
        checks["service:api:2"]["Definition"]["DeregisterCriticalServiceAfter"],
        "1h30m0s"
    );
    assert_eq!(checks["service:api:3"]["Name"], "Service 'api' check");
}

#[test]
fn registration_validation_texts() {
    let a = TestAgent::dev();
    let cases: &[(&str, u16, &str)] = &[
        (r#"{"Port":80}"#, 400, "Missing service name"),
        (
            r#"{"Name":"x","Address":"0.0.0.0"}"#,
            400,
            "Invalid service address",
        ),
        (
            r#"{"Name":"x","Check":{"TTL":"10s","Interval":"5s"}}"#,
            400,
            "Invalid check: Interval and TTL cannot both be specified",
        ),
        (
            r#"{"Name":"x","Check":{"HTTP":"http://x"}}"#,
            400,
            "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or gRPC checks",
        ),
        (
            r#"{"Name":"x","Check":{"Notes":"n"}}"#,
            400,
            "Invalid check: TTL must be > 0 for TTL checks",
        ),
        (
            r#"{"Name":"x","Check":{"TTL":"10s","Status":"bogus"}}"#,
            400,
            "Status for checks must 'passing', 'warning', 'critical'",
        ),
        (
            r#"{"Name":"x","Bogus":true}"#,
            400,
            r#"Request decode failed: json: unknown field "Bogus""#,
        ),
        (
            r#"{"Name":"x","Check":{"script":"/bin/true"}}"#,
            400,
            r#"Request decode failed: json: unknown field "script""#,
        ),
        (
            r#"{"Name":"x","Weights":{"Passing":0,"Warning":1}}"#,
            400,
            "Invalid Weights: Passing must be greater than 0",
        ),
        (
            r#"{"Name":"x","Check":{"TTL":"ten"}}"#,
            400,
            r#"Request decode failed: time: invalid duration "ten""#,
        ),
        ("", 400, "Request decode failed: EOF"),
    ];
    for (body, code, text) in cases {
        let r = a.put("/v1/agent/service/register", body);
        assert_eq!((r.status, r.body.as_str()), (*code, *text), "body {body}");
    }
    let r = a.put("/v1/agent/service/register", r#"{"Name":"x","Port":"80"}"#);
    assert_eq!(r.status, 400);
    assert!(
        r.body.starts_with(
            "Request decode failed: json: cannot unmarshal string into Go struct field"
        ),
        "{}",
        r.body
    );
    let r = a.put(
        "/v1/agent/service/register",
        r#"{"Name":"x","Meta":{"consul-x":"1"}}"#,
    );
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("Invalid Service Meta: "), "{}", r.body);
    assert_eq!(
        a.get_ok("/v1/agent/services").json(),
        json!({}),
        "rejected requests write nothing"
    );
}

#[test]
fn ttl_updates_move_health_results() {
    let a = TestAgent::dev();
    a.put(
        "/v1/agent/service/register",
        r#"{"Name":"web","Check":{"TTL":"30s"}}"#,
    );
    assert_eq!(passing_count(&a, "web"), 0);
    assert_eq!(
        a.get_ok("/v1/health/service/web")
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let r = a.put("/v1/agent/check/pass/service:web?note=all+good", "");
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(passing_count(&a, "web"), 1);
    let c = &a.get_ok("/v1/agent/checks").json()["service:web"];
    assert_eq!(c["Output"], "all good");

    a.put("/v1/agent/check/warn/service:web", "");
    assert_eq!(passing_count(&a, "web"), 0);
    assert_eq!(
        a.get_ok("/v1/health/checks/web").json()[0]["Status"],
        "warning"
    );

    let r = a.put(
        "/v1/agent/check/update/service:web",
        r#"{"Status":"passing","Output":"fine"}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(passing_count(&a, "web"), 1);
    assert_eq!(
        a.get_ok("/v1/health/checks/web").json()[0]["Output"],
        "fine"
    );

    a.put("/v1/agent/check/fail/service:web", "");
    assert_eq!(passing_count(&a, "web"), 0);

    let r = a.put("/v1/agent/check/update/service:web", r#"{"Status":"ok"}"#);
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Invalid check status: 'ok'")
    );
    let r = a.put("/v1/agent/check/pass/nope", "");
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, r#"CheckID "nope" does not have associated TTL"#)
    );
    let r = a.get_ok("/v1/agent/check/pass/service:web");
    assert_eq!((r.status, r.header("Allow")), (405, Some("OPTIONS,PUT")));
}

#[test]
fn reregistration_keeps_check_state_and_deregister_removes_all() {
    let a = TestAgent::dev();
    a.put(
        "/v1/agent/service/register",
        r#"{"Name":"web","Check":{"TTL":"30s"}}"#,
    );
    a.put("/v1/agent/check/pass/service:web", "");
    a.put(
        "/v1/agent/service/register",
        r#"{"Name":"web","Tags":["v2"],"Check":{"TTL":"30s"}}"#,
    );
    assert_eq!(passing_count(&a, "web"), 1);
    assert_eq!(
        a.get_ok("/v1/catalog/service/web").json()[0]["ServiceTags"],
        json!(["v2"])
    );

    let r = a.put("/v1/agent/service/deregister/web", "");
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    assert_eq!(a.get_ok("/v1/agent/services").json(), json!({}));
    assert_eq!(a.get_ok("/v1/agent/checks").json(), json!({}));
    assert_eq!(a.get_ok("/v1/catalog/service/web").json(), json!([]));
    assert_eq!(
        a.put("/v1/agent/service/deregister/unknown", "").status,
        200
    );
}

#[test]
fn single_service_endpoint_and_content_hash() {
    let a = TestAgent::dev();
    a.put("/v1/agent/service/register", r#"{"Name":"web","Port":1}"#);
    let r = a.get_ok("/v1/agent/service/web");
    assert_eq!(r.status, 200);
    let hash = r.header("X-Consul-ContentHash").unwrap().to_string();
    assert_eq!(r.json()["ContentHash"], json!(hash));
    assert_eq!(r.json()["Port"], 1);

    // Hash blocking returns once the service changes.
    let base = a.base();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        reqwest::blocking::Client::new()
            .put(format!("{base}/v1/agent/service/register"))
            .body(r#"{"Name":"web","Port":2}"#)
            .send()
            .unwrap();
    });
    let t = Instant::now();
    let r = a.get_ok(&format!("/v1/agent/service/web?hash={hash}&wait=10s"));
    writer.join().unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert_eq!(r.json()["Port"], 2);
    assert_ne!(r.header("X-Consul-ContentHash").unwrap(), hash);

    let r = a.get_ok("/v1/agent/service/nope");
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, "unknown service ID: nope")
    );
}

#[test]
fn standalone_check_registration() {
    let a = TestAgent::dev();
    let r = a.put("/v1/agent/check/register", r#"{"TTL":"10s"}"#);
    assert_eq!((r.status, r.body.as_str()), (400, "Missing check name"));
    let r = a.put(
        "/v1/agent/check/register",
        r#"{"Name":"c","TTL":"10s","ServiceID":"ghost"}"#,
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, r#"ServiceID "ghost" does not exist"#)
    );

    let r = a.put(
        "/v1/agent/check/register",
        r#"{"name":"mem","id":"mem1","ttl":"10s","notes":"n","status":"passing"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let c = &a.get_ok("/v1/agent/checks").json()["mem1"];
    assert_eq!(c["Name"], "mem");
    assert_eq!(c["ServiceID"], "");
    assert!(a.get_ok("/v1/health/node/node1").body.contains("mem1"));

    a.put("/v1/agent/service/register", r#"{"Name":"web"}"#);
    let r = a.put(
        "/v1/agent/check/register",
        r#"{"Name":"web-ttl","TTL":"10s","service_id":"web","Status":"passing"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(passing_count(&a, "web"), 1);

    assert_eq!(a.put("/v1/agent/check/deregister/mem1", "").status, 200);
    assert!(!a.get_ok("/v1/health/node/node1").body.contains("mem1"));
    assert_eq!(a.put("/v1/agent/check/deregister/mem1", "").status, 404);
}

#[test]
fn node_and_service_maintenance() {
    let a = TestAgent::dev();
    a.put(
        "/v1/agent/service/register",
        r#"{"Name":"web","Check":{"TTL":"30s","Status":"passing"}}"#,
    );
    assert_eq!(passing_count(&a, "web"), 1);

    let r = a.put("/v1/agent/maintenance", "");
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Missing value for enable")
    );
    let r = a.put("/v1/agent/maintenance?enable=sure", "");
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, r#"Invalid value for enable: "sure""#)
    );

    assert_eq!(
        a.put("/v1/agent/maintenance?enable=true&reason=patching", "")
            .status,
        200
    );
    let checks = a.get_ok("/v1/health/node/node1").json();
    let m = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["CheckID"] == "_node_maintenance")
        .cloned()
        .unwrap();
    assert_eq!(m["Status"], "critical");
    assert_eq!(m["Notes"], "patching");
    assert_eq!(passing_count(&a, "web"), 0);
    a.put("/v1/agent/maintenance?enable=false", "");
    assert_eq!(passing_count(&a, "web"), 1);

    assert_eq!(
        a.put("/v1/agent/service/maintenance/web?enable=true", "")
            .status,
        200
    );
    let checks = a.get_ok("/v1/health/checks/web").json();
    assert!(checks
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["CheckID"] == "_service_maintenance:web"));
    assert_eq!(passing_count(&a, "web"), 0);
    let r = a.get_ok("/v1/agent/health/service/id/web?format=text");
    assert_eq!((r.status, r.body.as_str()), (503, "maintenance"));
    a.put("/v1/agent/service/maintenance/web?enable=false", "");
    assert_eq!(passing_count(&a, "web"), 1);
    let r = a.get_ok("/v1/agent/health/service/id/web?format=text");
    assert_eq!((r.status, r.body.as_str()), (200, "passing"));

    let r = a.put("/v1/agent/service/maintenance/ghost?enable=true", "");
    assert_eq!(r.status, 404);
}

#[test]
fn identity_endpoints() {
    let a = TestAgent::dev();
    let me = a.get_ok("/v1/agent/self").json();
    assert_eq!(me["Config"]["Datacenter"], "dc1");
    assert_eq!(me["Config"]["NodeName"], "node1");
    assert_eq!(me["Config"]["Server"], true);
    assert_eq!(me["Member"]["Tags"]["role"], "consul");
    assert!(me["Stats"]["raft"]["state"].is_string());
    assert_eq!(me["Stats"]["consul"]["leader"], "true");
    let node = a.get_ok("/v1/catalog/node/node1").json();
    assert_eq!(me["Config"]["NodeID"], node["Node"]["ID"]);

    let members = a.get_ok("/v1/agent/members").json();
    assert_eq!(members[0]["Name"], "node1");
    assert_eq!(members[0]["Status"], 1);
    assert_eq!(members[0]["Tags"]["dc"], "dc1");

    assert_eq!(
        a.get_ok("/v1/agent/version").json()["HumanVersion"],
        "1.22.0"
    );
}

#[test]
fn metrics_in_json_and_prometheus_form() {
    let a = TestAgent::dev();
    a.put("/v1/kv/m", "1");
    let v: Value = a.get_ok("/v1/agent/metrics").json();
    assert!(v["Timestamp"].as_str().unwrap().ends_with("+0000 UTC"));
    for k in ["Gauges", "Points", "Counters", "Samples"] {
        assert!(v[k].is_array(), "{k}");
    }
    assert!(
        v["Samples"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["Name"] == "consul.api.http"),
        "{v}"
    );

    let r = a.get_ok("/v1/agent/metrics?format=prometheus");
    assert_eq!(r.status, 200);
    assert!(r.header("Content-Type").unwrap().starts_with("text/plain"));
    assert!(r.body.contains("consul_api_http"), "{}", r.body);
    assert!(r.body.contains("path=\"v1_kv_\""), "{}", r.body);
    let r = a
        .request(
            "GET",
            "/v1/agent/metrics",
            None,
            &[("Accept", "application/openmetrics-text")],
        )
        .unwrap();
    assert!(r.body.contains("# TYPE"));
}

#[test]
fn leave_exits_the_process_cleanly() {
    let mut a = TestAgent::dev();
    let r = a.put("/v1/agent/leave", "");
    assert_eq!(r.status, 200);
    let mut child = a.child.take().unwrap();
    let mut status = None;
    assert!(eventually(Duration::from_secs(15), || {
        status = child.try_wait().unwrap();
        status.is_some()
    }));
    assert_eq!(status.unwrap().code(), Some(0));
}

/// An HCL file in `-config-dir` configures the agent: it answers HTTP on
/// the file's `ports.http` (no flag sets it) and carries the file's
/// `node_meta`.
#[test]
fn an_hcl_file_in_the_config_dir_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = TestAgent::unstarted("127.0.125.1", &[]);
    a.http_port_from_config = true;
    let hcl = format!(
        "ports {{\n  http = {}\n}}\nnode_meta {{\n  rack = \"r1\"\n}}\nui_config {{ enabled = true }}\ntelemetry {{}}\n",
        a.ports.http
    );
    std::fs::write(dir.path().join("agent.hcl"), hcl).unwrap();
    a.extra
        .push(format!("-config-dir={}", dir.path().display()));
    a.start();
    let node = a.get_ok("/v1/catalog/node/node1").json();
    assert_eq!(node["Node"]["Meta"]["rack"], "r1", "{node}");
}

/// A port that is already taken stops the agent with Consul's
/// `==> Error starting agent` line and exit code 1, never a panic, even
/// though the servers started before it (DNS, raft, the feed) must be torn
/// down from inside the runtime.
#[test]
fn a_taken_http_port_is_a_startup_error_not_a_panic() {
    let a = TestAgent::unstarted("127.0.0.1", &[]);
    let _taken = std::net::TcpListener::bind(("127.0.0.1", a.ports.http)).expect("bind");
    let out = std::process::Command::new(common::BIN)
        .args(a.args())
        .output()
        .expect("run cairn");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("==> Error starting agent:") && stderr.contains("Address already in use"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "stderr: {stderr}");
}
