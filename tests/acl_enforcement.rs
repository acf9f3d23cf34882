//! ACL enforcement against the real binary: a dev agent with
//! `default_policy = "deny"` and a configured management token. Policies
//! and tokens are made through `/v1/acl/policy` and `/v1/acl/token`, then
//! the HTTP API and DNS are asked with and without them.

mod common;

use common::acl::{call, denial, req, ANONYMOUS};
use common::cluster::Node;
use common::eventually;
use serde_json::json;
use std::time::Duration;

const ROOT: &str = "root";
const FILTERED: &str = "X-Consul-Results-Filtered-By-ACLs";

/// A dev agent on 127.0.129.`host` with ACLs on and default deny.
fn acl_agent(host: u8) -> Node {
    let mut node = Node::new(&format!("acl{host}"), 129, host, vec!["-dev".into()]);
    let conf_path = node
        .data_dir
        .parent()
        .expect("data dir has a parent")
        .join("acl.json");
    let conf = json!({
        "acl": {
            "enabled": true,
            "default_policy": "deny",
            "tokens": {"initial_management": ROOT}
        }
    });
    std::fs::write(&conf_path, conf.to_string()).expect("write config");
    node.args
        .push(format!("-config-file={}", conf_path.display()));
    node.spawn();
    let ready = eventually(Duration::from_secs(30), || {
        call(
            &node,
            "GET",
            &format!("/v1/catalog/node/{}", node.name),
            None,
            Some(ROOT),
        )
        .is_some_and(|r| r.status == 200 && r.body.trim() != "null")
    });
    assert!(
        ready,
        "agent did not become ready; log:\n{}",
        node.log_text()
    );
    node
}

/// Creates a policy with `rules` and a token holding it; returns
/// (AccessorID, SecretID).
fn token_with(node: &Node, name: &str, rules: &str) -> (String, String) {
    common::acl::token_with(node, ROOT, name, rules)
}

/// Two services and two keys, written with the management token.
fn seed(node: &Node) {
    for (name, port) in [("web", 80), ("db", 5432)] {
        let body = json!({"Name": name, "Port": port}).to_string();
        let r = req(
            node,
            "PUT",
            "/v1/agent/service/register",
            Some(&body),
            Some(ROOT),
        );
        assert_eq!(r.status, 200, "register {name}: {}", r.body);
    }
    for key in ["web/x", "db/x"] {
        let r = req(node, "PUT", &format!("/v1/kv/{key}"), Some("v"), Some(ROOT));
        assert_eq!(r.status, 200, "put {key}: {}", r.body);
    }
    let synced = eventually(Duration::from_secs(10), || {
        let r = req(node, "GET", "/v1/catalog/services", None, Some(ROOT));
        r.status == 200 && r.json().get("web").is_some() && r.json().get("db").is_some()
    });
    assert!(synced, "services never reached the catalog");
}

#[test]
fn default_deny_hides_everything_from_anonymous() {
    let node = acl_agent(1);
    seed(&node);

    // A single key: 403 naming the anonymous accessor, present or not.
    for key in ["web/x", "missing"] {
        let r = req(&node, "GET", &format!("/v1/kv/{key}"), None, None);
        assert_eq!(r.status, 403, "{key}: {}", r.body);
        assert_eq!(r.body, denial(ANONYMOUS, "key:read", key));
    }
    let r = req(&node, "PUT", "/v1/kv/web/y", Some("v"), None);
    assert_eq!(r.status, 403);
    assert_eq!(r.body, denial(ANONYMOUS, "key:write", "web/y"));

    // Lists are filtered to nothing; the header is masked for a request
    // without a token, as Consul does.
    let r = req(&node, "GET", "/v1/kv/?recurse", None, None);
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.header(FILTERED), None);
    let r = req(&node, "GET", "/v1/catalog/services", None, None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({}));
    let r = req(&node, "GET", "/v1/catalog/nodes", None, None);
    assert_eq!(r.json(), json!([]));
    let r = req(&node, "GET", "/v1/health/service/web", None, None);
    assert_eq!(r.json(), json!([]));
    let r = req(&node, "GET", "/v1/catalog/node/acl1", None, None);
    assert_eq!(r.body.trim(), "null");
    let r = req(&node, "GET", "/v1/agent/services", None, None);
    assert_eq!(r.json(), json!({}));
    let r = req(&node, "GET", "/v1/agent/members", None, None);
    assert_eq!(r.json(), json!([]));

    // Agent and operator endpoints refuse.
    let r = req(&node, "GET", "/v1/agent/self", None, None);
    assert_eq!(r.status, 403);
    assert_eq!(r.body, denial(ANONYMOUS, "agent:read", "acl1"));
    let r = req(&node, "GET", "/v1/operator/raft/configuration", None, None);
    assert_eq!(r.status, 403, "{}", r.body);
    // Status needs no token at all.
    let r = req(&node, "GET", "/v1/status/leader", None, None);
    assert_eq!(r.status, 200);

    // DNS answers with the anonymous token: the service and the node exist
    // but cannot be read, so they are NXDOMAIN.
    for name in ["web.service.consul", "acl1.node.consul"] {
        let out = node.dig(&[name, "A"]);
        assert!(out.contains("status: NXDOMAIN"), "{name}:\n{out}");
    }
}

#[test]
fn key_prefix_token_writes_only_under_its_prefix() {
    let node = acl_agent(2);
    seed(&node);
    let (accessor, secret) =
        token_with(&node, "web-kv", r#"key_prefix "web/" { policy = "write" }"#);
    let t = Some(secret.as_str());

    let r = req(&node, "PUT", "/v1/kv/web/x", Some("new"), t);
    assert_eq!((r.status, r.body.trim()), (200, "true"));
    let r = req(&node, "GET", "/v1/kv/web/x?raw", None, t);
    assert_eq!((r.status, r.body.trim()), (200, "new"));

    let r = req(&node, "PUT", "/v1/kv/db/x", Some("stolen"), t);
    assert_eq!(r.status, 403);
    assert_eq!(r.body, denial(&accessor, "key:write", "db/x"));
    let r = req(&node, "GET", "/v1/kv/db/x?raw", None, Some(ROOT));
    assert_eq!(r.body, "v", "a refused write changes nothing");

    // Recursive delete needs write on the whole tree.
    let r = req(&node, "DELETE", "/v1/kv/?recurse", None, t);
    assert_eq!(r.status, 403);
    assert_eq!(r.body, denial(&accessor, "key:write", ""));
    let r = req(&node, "DELETE", "/v1/kv/web/?recurse", None, t);
    assert_eq!(r.status, 200, "{}", r.body);

    // Listing shows only the readable keys, and says something was hidden.
    req(&node, "PUT", "/v1/kv/web/y", Some("1"), t);
    let r = req(&node, "GET", "/v1/kv/?keys", None, t);
    assert_eq!(r.json(), json!(["web/y"]));
    assert_eq!(r.header(FILTERED), Some("true"));
    let r = req(&node, "GET", "/v1/kv/?recurse", None, t);
    let entries = r.json();
    let keys: Vec<&str> = entries
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["Key"].as_str())
        .collect();
    assert_eq!(keys, vec!["web/y"]);
    assert_eq!(r.header(FILTERED), Some("true"));

    // A transaction is refused as a whole when one operation is denied.
    let txn = json!([
        {"KV": {"Verb": "set", "Key": "web/z", "Value": "eA=="}},
        {"KV": {"Verb": "set", "Key": "db/z", "Value": "eA=="}}
    ])
    .to_string();
    let r = req(&node, "PUT", "/v1/txn", Some(&txn), t);
    assert_eq!(r.status, 409, "{}", r.body);
    let errors = &r.json()["Errors"];
    assert_eq!(errors[0]["OpIndex"], 1);
    assert_eq!(errors[0]["What"], denial(&accessor, "key:write", "db/z"));
    let r = req(&node, "GET", "/v1/kv/web/z", None, t);
    assert_eq!(r.status, 404, "nothing of a refused transaction is applied");

    // Catalog operations in a transaction need node:write (and
    // service:write) for every verb, reads included, as in Consul.
    let txn = json!([
        {"KV": {"Verb": "set", "Key": "web/z", "Value": "eA=="}},
        {"Node": {"Verb": "get", "Node": {"Node": "n1"}}},
        {"Service": {"Verb": "set", "Node": "n1", "Service": {"ID": "w", "Service": "web"}}}
    ])
    .to_string();
    let r = req(&node, "PUT", "/v1/txn", Some(&txn), t);
    assert_eq!(r.status, 409, "{}", r.body);
    let errors = &r.json()["Errors"];
    assert_eq!(errors[0]["OpIndex"], 1);
    assert_eq!(errors[0]["What"], denial(&accessor, "node:write", "n1"));
    assert_eq!(errors[1]["OpIndex"], 2);
    assert_eq!(errors[1]["What"], denial(&accessor, "service:write", "web"));

    // An unknown token is refused before anything else.
    let r = req(&node, "GET", "/v1/kv/web/y", None, Some("no-such-token"));
    assert_eq!((r.status, r.body.trim()), (403, "ACL not found"));
}

#[test]
fn service_read_token_sees_only_its_service() {
    let node = acl_agent(3);
    seed(&node);
    let rules = r#"
service "web" { policy = "read" }
node_prefix "" { policy = "read" }
"#;
    let (accessor, secret) = token_with(&node, "web-read", rules);
    let t = Some(secret.as_str());

    let r = req(&node, "GET", "/v1/catalog/services", None, t);
    let services = r.json();
    let names: Vec<&String> = services.as_object().expect("object").keys().collect();
    assert_eq!(names, vec!["web"], "consul and db are hidden");
    assert_eq!(r.header(FILTERED), Some("true"));

    let r = req(&node, "GET", "/v1/health/service/web", None, t);
    assert_eq!(r.json().as_array().map(Vec::len), Some(1));
    assert_eq!(r.header(FILTERED), None, "nothing was hidden");
    let r = req(&node, "GET", "/v1/health/service/db", None, t);
    assert_eq!(r.json(), json!([]));
    assert_eq!(r.header(FILTERED), Some("true"));
    let r = req(&node, "GET", "/v1/catalog/service/db", None, t);
    assert_eq!(r.json(), json!([]));
    assert_eq!(r.header(FILTERED), Some("true"));

    // Nodes are readable; the node's services are cut to web.
    let r = req(&node, "GET", "/v1/catalog/nodes", None, t);
    assert_eq!(r.json().as_array().map(Vec::len), Some(1));
    let r = req(&node, "GET", "/v1/catalog/node/acl3", None, t);
    let services: Vec<String> = r.json()["Services"]
        .as_object()
        .expect("services")
        .values()
        .map(|s| s["Service"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(services, vec!["web".to_string()]);
    assert_eq!(r.header(FILTERED), Some("true"));
    let r = req(&node, "GET", "/v1/agent/services", None, t);
    let local = r.json();
    let ids: Vec<&String> = local.as_object().expect("object").keys().collect();
    assert_eq!(ids, vec!["web"]);
    assert_eq!(r.header(FILTERED), Some("true"));

    // Reading is not writing.
    let body = json!({"Name": "web", "Port": 81}).to_string();
    let r = req(&node, "PUT", "/v1/agent/service/register", Some(&body), t);
    assert_eq!(r.status, 403);
    assert_eq!(r.body, denial(&accessor, "service:write", "web"));
    let r = req(&node, "GET", "/v1/agent/service/db", None, t);
    assert_eq!(r.status, 403);
    assert_eq!(r.body, denial(&accessor, "service:read", "db"));

    // The management token sees everything, unfiltered.
    let r = req(&node, "GET", "/v1/catalog/services", None, Some(ROOT));
    let all = r.json();
    for name in ["web", "db", "consul"] {
        assert!(all.get(name).is_some(), "{name} missing: {all}");
    }
    assert_eq!(r.header(FILTERED), None);
    let r = req(&node, "GET", "/v1/kv/?recurse", None, Some(ROOT));
    assert_eq!(r.json().as_array().map(Vec::len), Some(2));
    assert_eq!(r.header(FILTERED), None);
}

#[test]
fn acls_off_change_nothing() {
    let mut node = Node::new("open1", 129, 4, vec!["-dev".into()]);
    node.spawn();
    let ready = eventually(Duration::from_secs(30), || {
        call(&node, "GET", "/v1/catalog/node/open1", None, None)
            .is_some_and(|r| r.status == 200 && r.body.trim() != "null")
    });
    assert!(
        ready,
        "agent did not become ready; log:\n{}",
        node.log_text()
    );
    let r = req(&node, "PUT", "/v1/kv/db/x", Some("v"), None);
    assert_eq!((r.status, r.body.trim()), (200, "true"));
    // Any token is accepted and nothing is filtered.
    let r = req(&node, "GET", "/v1/kv/?recurse", None, Some("whatever"));
    assert_eq!(r.status, 200);
    assert_eq!(r.header(FILTERED), None);
    let r = req(&node, "GET", "/v1/catalog/services", None, None);
    assert!(r.json().get("consul").is_some());
    let out = node.dig(&["consul.service.consul", "A"]);
    assert!(out.contains("status: NOERROR"), "{out}");
}
