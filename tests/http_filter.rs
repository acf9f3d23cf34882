//! `?filter` (go-bexpr) on every list endpoint cairn has, against the real
//! binary: results narrowed as Consul narrows them, a bad filter answered
//! with Consul's 500 and text (never with the unfiltered list), blocking
//! queries that keep blocking under a filter, the ACL header left to the
//! ACLs, and a client agent answering as its server does.

mod common;

use common::cluster::{wait_leader, Node};
use common::{eventually, http_request, Resp};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PREFIX: &str = "Failed to create boolean expression evaluator: ";

/// A `-dev` agent on 127.0.`net`.`host` with `extra` flags, once it has
/// registered itself.
fn dev(net: u8, host: u8, extra: &[&str]) -> Node {
    let mut args = vec!["-dev".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut node = Node::new(&format!("f{host}"), net, host, args);
    node.spawn();
    wait_registered(&node);
    node
}

fn wait_registered(node: &Node) {
    let path = format!("/v1/health/node/{}", node.name);
    let ready = eventually(Duration::from_secs(30), || {
        node.get(&path)
            .is_ok_and(|r| r.status == 200 && r.body.contains("serfHealth"))
    });
    assert!(ready, "{} not ready; log:\n{}", node.name, node.log_text());
}

/// Form-encodes a query value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn with_filter(path: &str, filter: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}filter={}", enc(filter))
}

fn get(node: &Node, path: &str) -> Resp {
    node.get(path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The JSON of a filtered read that must succeed.
fn filtered(node: &Node, path: &str, filter: &str) -> Value {
    let r = get(node, &with_filter(path, filter));
    assert_eq!(r.status, 200, "{path} ?filter={filter}: {}", r.body);
    r.json()
}

fn names(v: &Value, key: &str) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|e| {
            e.pointer(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        })
        .collect();
    out.sort();
    out
}

fn put(node: &Node, path: &str, body: Value) {
    let r = node.put(path, &body.to_string()).expect("PUT");
    assert_eq!(r.status, 200, "PUT {path}: {}", r.body);
}

/// Three catalog nodes: web-a (prod, web v1 on 8080, critical), web-c
/// (prod, web v2 on 9090, passing) and db-b (staging, db, passing).
fn register_catalog(node: &Node) {
    put(
        node,
        "/v1/catalog/register",
        json!({
            "Node": "web-a", "Address": "10.0.0.1",
            "NodeMeta": {"env": "prod", "rack": "r1"},
            "Service": {"ID": "web", "Service": "web", "Tags": ["v1", "primary"], "Port": 8080,
                        "Meta": {"version": "1.2"}},
            "Checks": [{"CheckID": "web-alive", "Name": "web alive", "Status": "critical",
                        "ServiceID": "web"}]
        }),
    );
    put(
        node,
        "/v1/catalog/register",
        json!({
            "Node": "web-c", "Address": "10.0.0.3", "NodeMeta": {"env": "prod"},
            "Service": {"ID": "web", "Service": "web", "Tags": ["v2"], "Port": 9090},
            "Checks": [{"CheckID": "web-alive", "Name": "web alive", "Status": "passing",
                        "ServiceID": "web"}]
        }),
    );
    put(
        node,
        "/v1/catalog/register",
        json!({
            "Node": "db-b", "Address": "10.0.0.2", "NodeMeta": {"env": "staging"},
            "Service": {"ID": "db", "Service": "db", "Tags": ["v2"], "Port": 5432},
            "Checks": [{"CheckID": "db-alive", "Name": "db alive", "Status": "passing",
                        "ServiceID": "db"},
                       {"CheckID": "disk", "Name": "disk", "Status": "warning"}]
        }),
    );
}

/// Two local services with TTL checks on the agent itself.
fn register_local(node: &Node) {
    put(
        node,
        "/v1/agent/service/register",
        json!({"ID": "api-1", "Name": "api", "Tags": ["blue"], "Port": 7001,
               "Meta": {"team": "core"}, "Check": {"TTL": "30s", "CheckID": "api-ttl"}}),
    );
    put(
        node,
        "/v1/agent/service/register",
        json!({"ID": "cache-1", "Name": "cache", "Tags": ["green"], "Port": 7002,
               "Check": {"TTL": "30s", "CheckID": "cache-ttl"}}),
    );
    put(node, "/v1/agent/check/pass/api-ttl", json!({}));
}

#[test]
fn every_list_endpoint_filters() {
    let a = dev(160, 1, &[]);
    register_catalog(&a);
    register_local(&a);

    let nodes = filtered(&a, "/v1/catalog/nodes", "Meta.env == prod");
    assert_eq!(names(&nodes, "/Node"), ["web-a", "web-c"]);
    let nodes = filtered(
        &a,
        "/v1/catalog/nodes",
        "Meta.env != prod and Node matches \"^[dw]\"",
    );
    assert_eq!(names(&nodes, "/Node"), ["db-b"]);

    // Instances are filtered, then grouped: only web-a's tags remain.
    let services = filtered(&a, "/v1/catalog/services", "ServiceTags contains v1");
    assert_eq!(services, json!({"web": ["primary", "v1"]}));
    let services = filtered(&a, "/v1/catalog/services", "v2 in ServiceTags");
    assert_eq!(services, json!({"db": ["v2"], "web": ["v2"]}));
    // Consul filters the instances as its state store keeps them, without
    // their node's fields: node meta matches nothing here.
    let services = filtered(&a, "/v1/catalog/services", "NodeMeta.env == prod");
    assert_eq!(services, json!({}));

    let rows = filtered(&a, "/v1/catalog/service/web", "ServicePort == 9090");
    assert_eq!(names(&rows, "/Node"), ["web-c"]);
    let rows = filtered(&a, "/v1/catalog/service/web", "NodeMeta.rack == r1");
    assert_eq!(names(&rows, "/Node"), ["web-a"]);
    let rows = filtered(
        &a,
        "/v1/catalog/service/web",
        "ServiceMeta.version != \"1.2\"",
    );
    assert_eq!(
        names(&rows, "/Node"),
        ["web-c"],
        "a missing key is not equal"
    );

    let node = filtered(&a, "/v1/catalog/node/web-a", "Service == nope");
    assert_eq!(node["Node"]["Node"], "web-a", "the node stays");
    assert_eq!(node["Services"], json!({}));
    let node = filtered(&a, "/v1/catalog/node/web-a", "Port == 8080");
    assert_eq!(node["Services"]["web"]["Port"], 8080);
    let list = filtered(&a, "/v1/catalog/node-services/db-b", "primary in Tags");
    assert_eq!(list["Services"], json!([]));
    let list = filtered(&a, "/v1/catalog/node-services/db-b", "Weights.Passing == 1");
    assert_eq!(list["Services"][0]["ID"], "db");

    let checks = filtered(&a, "/v1/health/node/db-b", "Status == warning");
    assert_eq!(names(&checks, "/CheckID"), ["disk"]);
    let checks = filtered(&a, "/v1/health/checks/web", "Status == critical");
    assert_eq!(names(&checks, "/Node"), ["web-a"]);
    let checks = filtered(
        &a,
        "/v1/health/state/any",
        "Node == \"db-b\" and ServiceID == \"\"",
    );
    assert_eq!(names(&checks, "/CheckID"), ["disk"]);
    let checks = filtered(&a, "/v1/health/state/passing", "CheckID == serfHealth");
    assert_eq!(names(&checks, "/Node"), ["f1"]);

    let entries = filtered(&a, "/v1/health/service/web", "Checks.Status == critical");
    assert_eq!(names(&entries, "/Node/Node"), ["web-a"]);
    let entries = filtered(&a, "/v1/health/service/web", "Checks.Status != critical");
    assert_eq!(
        names(&entries, "/Node/Node"),
        ["web-c"],
        "any check not critical"
    );
    let entries = filtered(
        &a,
        "/v1/health/service/web",
        "Node.Meta.env == prod and Service.Port == 8080 or v2 in Service.Tags",
    );
    assert_eq!(names(&entries, "/Node/Node"), ["web-a", "web-c"]);
    let entries = filtered(
        &a,
        "/v1/health/service/web?passing",
        "Service.Tags is not empty",
    );
    assert_eq!(names(&entries, "/Node/Node"), ["web-c"], "with ?passing");

    let services = filtered(&a, "/v1/agent/services", "Meta.team == core");
    assert_eq!(services.as_object().map(|o| o.len()), Some(1));
    assert_eq!(services["api-1"]["Service"], "api");
    let services = filtered(&a, "/v1/agent/services", "Port != 7001");
    assert_eq!(services.as_object().map(|o| o.len()), Some(1));
    assert_eq!(services["cache-1"]["Port"], 7002);
    let checks = filtered(&a, "/v1/agent/checks", "Status == passing");
    let keys: Vec<&String> = checks.as_object().expect("map").keys().collect();
    assert_eq!(keys, ["api-ttl"]);

    let members = filtered(&a, "/v1/agent/members", "Name == f1 and Status == 1");
    assert_eq!(names(&members, "/Name"), ["f1"]);
    let members = filtered(&a, "/v1/agent/members", "Tags.role == node");
    assert_eq!(members, json!([]));
    let members = filtered(&a, "/v1/agent/members", "127 in Addr");
    assert_eq!(names(&members, "/Name"), ["f1"]);

    let ui = filtered(&a, "/v1/internal/ui/services", "Service.Tags contains v1");
    assert_eq!(names(&ui, "/Name"), ["web"]);
    assert_eq!(ui[0]["InstanceCount"], 1);
    assert_eq!(ui[0]["ChecksCritical"], 1);
    let ui = filtered(&a, "/v1/internal/ui/services", "Checks.Status == warning");
    assert_eq!(names(&ui, "/Name"), ["db"], "node checks count");
    let ui = filtered(&a, "/v1/internal/ui/nodes", "Meta.env == staging");
    assert_eq!(names(&ui, "/Node"), ["db-b"]);
    let ui = filtered(&a, "/v1/internal/ui/nodes", "Services.Service == web");
    assert_eq!(names(&ui, "/Node"), ["web-a", "web-c"]);
}

/// Asserts Consul's 500 for a filter it cannot create.
fn refused(node: &Node, path: &str, filter: &str, reason: &str) {
    let r = get(node, &with_filter(path, filter));
    assert_eq!(r.status, 500, "{path} ?filter={filter}: {}", r.body);
    assert_eq!(
        r.body,
        format!("{PREFIX}{reason}"),
        "{path} ?filter={filter}"
    );
}

#[test]
fn bad_filters_are_500_with_consuls_text() {
    let a = dev(160, 2, &[]);
    register_catalog(&a);
    let syntax =
        r#"1:4 (3): no match found, expected: "!=", ".", "==", "[", [ \t\r\n] or [a-zA-Z0-9_]"#;
    for path in [
        "/v1/catalog/nodes",
        "/v1/catalog/services",
        "/v1/catalog/service/web",
        "/v1/catalog/node/web-a",
        "/v1/catalog/node-services/web-a",
        "/v1/health/node/web-a",
        "/v1/health/checks/web",
        "/v1/health/state/any",
        "/v1/health/service/web",
        "/v1/agent/services",
        "/v1/agent/checks",
        "/v1/agent/members",
        "/v1/internal/ui/services",
        "/v1/internal/ui/nodes",
    ] {
        refused(&a, path, "foo", syntax);
    }
    refused(
        &a,
        "/v1/catalog/nodes",
        "Node == host-name",
        r#"1:13 (12): no match found, expected: ".", "[", [ \t\r\n], [a-zA-Z0-9_] or EOF"#,
    );
    refused(
        &a,
        "/v1/health/service/web",
        "(Service.Port == 80",
        r#"1:20 (19): rule "grouping": Unmatched parentheses"#,
    );
    refused(
        &a,
        "/v1/health/service/web",
        "Service.Nope == 1",
        r#"Selector "Service.Nope" is not valid"#,
    );
    refused(
        &a,
        "/v1/catalog/service/web",
        "ServiceTags == v1",
        r#"Invalid match operator "Equal" for selector "ServiceTags""#,
    );
    refused(
        &a,
        "/v1/catalog/service/web",
        "ServicePort == eighty",
        r#"Failed to coerce value "eighty" for selector "ServicePort": strconv.ParseInt: parsing "eighty": invalid syntax"#,
    );
    refused(
        &a,
        "/v1/catalog/nodes",
        "Node matches \"web[\"",
        r#"Failed to compile regular expression "web[": error parsing regexp: missing closing ]: `[`"#,
    );
    // Checked against the type, not the data: an empty list still refuses.
    refused(
        &a,
        "/v1/health/checks/no-such-service",
        "Nope == 1",
        r#"Selector "Nope" is not valid"#,
    );
    refused(
        &a,
        "/v1/catalog/node/no-such-node",
        "Nope == 1",
        r#"Selector "Nope" is not valid"#,
    );
    // Case matters: selectors are Go field names.
    refused(
        &a,
        "/v1/catalog/nodes",
        "node == web",
        r#"Selector "node" is not valid"#,
    );

    // /v1/agent/checks is created without a type in Consul: a bad selector
    // passes over no checks and fails, unprefixed, over some.
    let r = get(&a, &with_filter("/v1/agent/checks", "Nope == 1"));
    assert_eq!((r.status, r.body.trim()), (200, "{}"), "no local checks");
    register_local(&a);
    let r = get(&a, &with_filter("/v1/agent/checks", "Nope == 1"));
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(r.body, r#"Selector "Nope" is not valid"#);
    let r = get(&a, &with_filter("/v1/agent/services", "Nope == 1"));
    assert_eq!(r.status, 500);
    assert_eq!(r.body, format!(r#"{PREFIX}Selector "Nope" is not valid"#));

    // An empty filter is no filter.
    let all = get(&a, "/v1/catalog/nodes").json();
    let empty = get(&a, "/v1/catalog/nodes?filter=").json();
    assert_eq!(all, empty);
}

#[test]
fn blocking_queries_keep_blocking_under_a_filter() {
    let a = dev(160, 3, &[]);
    register_catalog(&a);
    let path = with_filter("/v1/health/service/web", "Service.Port == 9191");
    let first = get(&a, &path);
    assert_eq!(first.status, 200);
    assert_eq!(first.json(), json!([]));
    let index = first.index();

    // A bad filter fails at once, before any wait.
    let started = Instant::now();
    let bad = get(
        &a,
        &format!(
            "{}&index={index}&wait=30s",
            with_filter("/v1/health/service/web", "Nope == 1")
        ),
    );
    assert_eq!(bad.status, 500);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "did not fail fast"
    );

    let blocked = std::thread::spawn({
        let url = format!("http://{}:8500{path}&index={index}&wait=20s", a.ip);
        move || {
            let started = Instant::now();
            let r = http_request("GET", &url, None, &[]).expect("blocking GET");
            (r, started.elapsed())
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    // A change the filter drops still wakes the query (the index moves)...
    put(
        &a,
        "/v1/catalog/register",
        json!({"Node": "web-d", "Address": "10.0.0.4",
               "Service": {"ID": "web", "Service": "web", "Port": 9191}}),
    );
    let (r, took) = blocked.join().expect("thread");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        took >= Duration::from_millis(600),
        "returned before the change: {took:?}"
    );
    assert!(took < Duration::from_secs(15), "never woke: {took:?}");
    assert!(r.index() > index);
    assert_eq!(
        names(&r.json(), "/Node/Node"),
        ["web-d"],
        "and the result is filtered"
    );
}

#[test]
fn the_acl_header_reflects_acls_not_the_filter() {
    let mut node = Node::new("f4", 162, 4, vec!["-dev".into()]);
    let conf_path = node.data_dir.parent().expect("parent").join("acl.json");
    let conf = json!({"acl": {"enabled": true, "default_policy": "deny",
                              "tokens": {"initial_management": "root"}}});
    std::fs::write(&conf_path, conf.to_string()).expect("write config");
    node.args
        .push(format!("-config-file={}", conf_path.display()));
    node.spawn();
    let call = |method: &str, path: &str, body: Option<&str>, token: &str| {
        let url = format!("http://{}:8500{path}", node.ip);
        http_request(
            method,
            &url,
            body.map(str::as_bytes),
            &[("X-Consul-Token", token)],
        )
    };
    assert!(
        eventually(Duration::from_secs(30), || call(
            "GET",
            "/v1/catalog/nodes",
            None,
            "root"
        )
        .is_ok_and(|r| r.status == 200 && r.body.contains("f4"))),
        "not ready; log:\n{}",
        node.log_text()
    );
    for (n, svc) in [("web-a", "web"), ("db-b", "db")] {
        let body = json!({"Node": n, "Address": "10.0.0.9",
                          "Service": {"Service": svc, "Port": 80}})
        .to_string();
        let r = call("PUT", "/v1/catalog/register", Some(&body), "root").expect("register");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let policy = json!({"Name": "web-only",
                        "Rules": "node_prefix \"\" { policy = \"read\" }\nservice \"web\" { policy = \"read\" }"})
    .to_string();
    let r = call("PUT", "/v1/acl/policy", Some(&policy), "root").expect("policy");
    assert_eq!(r.status, 200, "{}", r.body);
    let token = json!({"Policies": [{"Name": "web-only"}]}).to_string();
    let r = call("PUT", "/v1/acl/token", Some(&token), "root").expect("token");
    assert_eq!(r.status, 200, "{}", r.body);
    let secret = r.json()["SecretID"].as_str().expect("secret").to_string();

    const HEADER: &str = "X-Consul-Results-Filtered-By-ACLs";
    // The filter drops db for a management token: no ACL header.
    let path = with_filter("/v1/catalog/services", "ServiceName == web");
    let r = call("GET", &path, None, "root").expect("GET");
    assert_eq!(r.json(), json!({"web": []}));
    assert_eq!(r.header(HEADER), None);
    // The ACLs drop db for the web-only token: the header.
    let path = with_filter("/v1/catalog/services", "ServicePort == 80");
    let r = call("GET", &path, None, &secret).expect("GET");
    assert_eq!(r.json(), json!({"web": []}));
    assert_eq!(r.header(HEADER), Some("true"), "db was hidden by the ACLs");
    // Consul's catalog services filter the instances before the ACLs see
    // the names: db, already gone, was not hidden by them.
    let path = with_filter("/v1/catalog/services", "ServiceName == web");
    let r = call("GET", &path, None, &secret).expect("GET");
    assert_eq!(r.header(HEADER), None);
    // Elsewhere the ACLs go first: the header says they hid something
    // even when the filter would have dropped it anyway.
    let path = with_filter("/v1/catalog/service/db", "ServicePort == 1");
    let r = call("GET", &path, None, &secret).expect("GET");
    assert_eq!((r.status, r.json()), (200, json!([])));
    assert_eq!(
        r.header(HEADER),
        Some("true"),
        "db's instance was hidden first"
    );
    // A bad filter is refused whatever the token may see.
    let r = call(
        "GET",
        &with_filter("/v1/catalog/nodes", "Nope == 1"),
        None,
        &secret,
    )
    .expect("GET");
    assert_eq!(r.status, 500);
}

#[test]
fn a_client_agent_filters_as_its_server_does() {
    let mut server = Node::server(161, 1, 1, &[1], &[]);
    server.spawn();
    wait_leader(&[&server], Duration::from_secs(30)).expect("leader");
    let mut client = Node::client(161, 2, &[1], &[]);
    client.spawn();
    wait_registered(&client);
    register_catalog(&server);
    register_local(&client);
    let reads = [
        ("/v1/catalog/nodes", "Meta.env == prod"),
        ("/v1/catalog/services", "ServiceTags contains v1"),
        ("/v1/catalog/service/web", "ServicePort == 9090"),
        ("/v1/catalog/node-services/c2", "Service == api"),
        ("/v1/health/service/web", "Checks.Status == critical"),
        ("/v1/health/state/any", "ServiceName == api"),
        ("/v1/health/checks/api", "Status == passing"),
        ("/v1/internal/ui/services", "Service.Service == api"),
        ("/v1/internal/ui/nodes", "Meta.env == staging"),
    ];
    for (path, filter) in reads {
        let path = with_filter(path, filter);
        let mut last = (Value::Null, Value::Null);
        let same = eventually(Duration::from_secs(20), || {
            let s = get(&server, &path);
            let c = get(&client, &path);
            if s.status != 200 || c.status != 200 {
                return false;
            }
            last = (s.json(), c.json());
            last.0 == last.1 && last.0 != json!([]) && last.0 != json!({})
        });
        assert!(same, "{path}: server {} client {}", last.0, last.1);
    }
    let members = filtered(&client, "/v1/agent/members", "Tags.role == consul");
    assert_eq!(names(&members, "/Name"), ["s1"]);
    let checks = filtered(&client, "/v1/agent/checks", "ServiceName == api");
    assert!(checks.get("api-ttl").is_some(), "{checks}");
    for (node, name) in [(&server, "server"), (&client, "client")] {
        let r = get(node, &with_filter("/v1/health/service/web", "Nope == 1"));
        assert_eq!(r.status, 500, "{name}");
        assert_eq!(r.body, format!(r#"{PREFIX}Selector "Nope" is not valid"#));
    }
}
