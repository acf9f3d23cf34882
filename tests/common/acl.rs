//! Helpers for tests that run agents with ACLs on: requests with a token,
//! an `acl {}` config file, policies with a token each, Consul's denial
//! text.
#![allow(dead_code)]

use super::cluster::Node;
use super::{eventually, http_request, Resp};
use serde_json::{json, Value};
use std::time::Duration;

/// The anonymous token's AccessorID.
pub const ANONYMOUS: &str = "00000000-0000-0000-0000-000000000002";

/// One request to `node`'s HTTP API (port 8500) with `token` as
/// `X-Consul-Token`; None when it did not complete.
pub fn call(
    node: &Node,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Option<Resp> {
    let url = format!("http://{}:8500{path}", node.ip);
    let headers: Vec<(&str, &str)> = token.map(|t| ("X-Consul-Token", t)).into_iter().collect();
    http_request(method, &url, body.map(str::as_bytes), &headers).ok()
}

/// [`call`], failing the test when the request does not complete.
pub fn req(node: &Node, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> Resp {
    call(node, method, path, body, token).unwrap_or_else(|| panic!("{method} {path} failed"))
}

/// [`req`] that must answer 200; its JSON body.
pub fn ok(node: &Node, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> Value {
    let r = req(node, method, path, body, token);
    assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
    r.json()
}

/// Writes `conf` (JSON) as a config file beside the node's data dir and
/// adds it to the node's arguments.
pub fn add_config(node: &mut Node, file: &str, conf: &Value) {
    let path = node.data_dir.parent().expect("parent").join(file);
    std::fs::write(&path, conf.to_string()).expect("write config");
    node.args.push(format!("-config-file={}", path.display()));
}

/// `acl {}` with ACLs on, `default_policy`, and `tokens`.
pub fn acl_conf(default_policy: &str, tokens: Value) -> Value {
    json!({"acl": {"enabled": true, "default_policy": default_policy, "tokens": tokens}})
}

/// Waits until the leader has made the builtin ACL objects: the anonymous
/// token then reads itself (before, requests under it meet the default
/// policy, but it is not stored yet).
pub fn wait_acl_ready(node: &Node) {
    let ready = eventually(Duration::from_secs(30), || {
        call(node, "GET", "/v1/acl/token/self", None, Some("anonymous"))
            .is_some_and(|r| r.status == 200 && r.body.contains(ANONYMOUS))
    });
    assert!(ready, "agent not ready; log:\n{}", node.log_text());
}

/// Creates a policy with `rules` and a token holding it (with `admin`);
/// returns (AccessorID, SecretID).
pub fn token_with(node: &Node, admin: &str, name: &str, rules: &str) -> (String, String) {
    let policy = json!({"Name": name, "Rules": rules}).to_string();
    let r = req(node, "PUT", "/v1/acl/policy", Some(&policy), Some(admin));
    assert_eq!(r.status, 200, "policy create: {}", r.body);
    let token = json!({"Description": name, "Policies": [{"Name": name}]}).to_string();
    let r = req(node, "PUT", "/v1/acl/token", Some(&token), Some(admin));
    assert_eq!(r.status, 200, "token create: {}", r.body);
    let t = r.json();
    (
        t["AccessorID"].as_str().expect("AccessorID").to_string(),
        t["SecretID"].as_str().expect("SecretID").to_string(),
    )
}

/// Consul's denial text; an empty resource name has no ` on` part.
pub fn denial(accessor: &str, permission: &str, resource: &str) -> String {
    let on = if resource.is_empty() {
        String::new()
    } else {
        format!(" on \"{resource}\"")
    };
    format!(
        "Permission denied: token with AccessorID '{accessor}' lacks permission '{permission}'{on}"
    )
}
