//! The ACL system against the real binary: bootstrap, tokens, policies,
//! rules, resolution and persistence, over real sockets.

mod common;

use common::acl::{call, ok, req, wait_acl_ready, ANONYMOUS};
use common::cluster::Node;
use common::{eventually, http_request, Resp};
use serde_json::json;
use std::time::Duration;

const ROOT: &str = "4e1b0c3f9d2a4b7c8e6f5a3d2c1b0a99";

/// A single server on 127.0.`net`.`host` with ACLs on, default deny, and
/// `initial` as the initial management token if given.
fn acl_server(net: u8, host: u8, initial: Option<&str>) -> Node {
    let mut node = Node::server(net, host, 1, &[], &[]);
    let mut tokens = serde_json::Map::new();
    if let Some(t) = initial {
        tokens.insert("initial_management".into(), json!(t));
    }
    let conf = json!({"acl": {"enabled": true, "default_policy": "deny", "tokens": tokens}});
    let path = node.data_dir.parent().expect("parent").join("acl.json");
    std::fs::write(&path, conf.to_string()).expect("write config");
    node.args.push(format!("-config-file={}", path.display()));
    start(&mut node);
    node
}

fn start(node: &mut Node) {
    node.spawn();
    wait_acl_ready(node);
}

fn header<'a>(r: &'a Resp, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn bootstrap_once_then_consuls_error() {
    let node = acl_server(127, 1, None);
    let first = ok(&node, "PUT", "/v1/acl/bootstrap", None, None);
    let secret = first["SecretID"].as_str().expect("secret").to_string();
    assert_eq!(first["ID"], first["SecretID"]);
    assert_eq!(first["Description"], "Bootstrap Token (Global Management)");
    assert_eq!(
        first["Policies"],
        json!([{"ID": "00000000-0000-0000-0000-000000000001", "Name": "global-management"}])
    );
    let index = first["CreateIndex"].as_u64().expect("index");
    let again = req(&node, "PUT", "/v1/acl/bootstrap", Some("{}"), None);
    assert_eq!(again.status, 403);
    assert_eq!(
        again.body,
        format!("Permission denied: ACL bootstrap no longer allowed (reset index: {index})")
    );
    // The bootstrap token manages: it lists the anonymous and itself.
    let tokens = ok(&node, "GET", "/v1/acl/tokens", None, Some(&secret));
    let accessors: Vec<&str> = tokens
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["AccessorID"].as_str())
        .collect();
    assert_eq!(accessors.len(), 2, "{tokens}");
    assert!(accessors.contains(&ANONYMOUS));
    // Anonymous may not list tokens even to see they exist.
    let r = req(&node, "GET", "/v1/acl/tokens", None, None);
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        format!(
            "Permission denied: token with AccessorID '{ANONYMOUS}' lacks permission 'acl:read'"
        )
    );
    assert_eq!(header(&r, "X-Consul-Default-ACL-Policy"), Some("deny"));
}

#[test]
fn acls_disabled_answers_401() {
    let mut node = Node::new("plain", 127, 2, vec!["-dev".into()]);
    node.spawn();
    let up = eventually(Duration::from_secs(20), || {
        call(&node, "GET", "/v1/status/leader", None, None).is_some_and(|r| r.status == 200)
    });
    assert!(up, "{}", node.log_text());
    let r = req(&node, "GET", "/v1/acl/tokens", None, None);
    assert_eq!((r.status, r.body.as_str()), (401, "ACL support disabled"));
    let r = req(&node, "PUT", "/v1/acl/bootstrap", None, None);
    assert_eq!((r.status, r.body.as_str()), (401, "ACL support disabled"));
    assert_eq!(header(&r, "X-Consul-Default-ACL-Policy"), Some("allow"));
}

#[test]
fn policies_tokens_and_enforcement() {
    let node = acl_server(127, 3, Some(ROOT));
    // The initial management token resolves and describes itself.
    let me = ok(&node, "GET", "/v1/acl/token/self", None, Some(ROOT));
    assert_eq!(me["Description"], "Initial Management Token");
    assert_eq!(me["SecretID"], ROOT);
    assert!(me["CreateTime"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert!(me["Hash"].as_str().is_some_and(|h| !h.is_empty()));

    // Malformed rules: 400 with the parse error.
    let bad = json!({"Name": "bad", "Rules": "key_prefix \"x\" { policy = \"sideways\" }"});
    let r = req(
        &node,
        "PUT",
        "/v1/acl/policy",
        Some(&bad.to_string()),
        Some(ROOT),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.starts_with("Invalid key_prefix policy"),
        "{}",
        r.body
    );
    let bad = json!({"Name": "bad", "Rules": "key_prefix \"x\" { policy = "});
    let r = req(
        &node,
        "PUT",
        "/v1/acl/policy",
        Some(&bad.to_string()),
        Some(ROOT),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.starts_with("Failed to parse ACL rules: "),
        "{}",
        r.body
    );

    // key_prefix "web/" write, by name (lower-case keys, as py-consul sends).
    let policy = json!({"name": "web", "rules": "key_prefix \"web/\" { policy = \"write\" }"});
    let p = ok(
        &node,
        "PUT",
        "/v1/acl/policy",
        Some(&policy.to_string()),
        Some(ROOT),
    );
    let pid = p["ID"].as_str().expect("id").to_string();
    let by_name = ok(&node, "GET", "/v1/acl/policy/name/web", None, Some(ROOT));
    assert_eq!(by_name["ID"], pid.as_str());
    let dup = req(
        &node,
        "PUT",
        "/v1/acl/policy",
        Some(&policy.to_string()),
        Some(ROOT),
    );
    assert_eq!(dup.status, 500);
    assert_eq!(
        dup.body,
        "Invalid Policy: A Policy with Name \"web\" already exists"
    );

    let t = ok(
        &node,
        "PUT",
        "/v1/acl/token",
        Some(&json!({"Description": "web writer", "Policies": [{"Name": "web"}]}).to_string()),
        Some(ROOT),
    );
    let (acc, secret) = (
        t["AccessorID"].as_str().expect("acc").to_string(),
        t["SecretID"].as_str().expect("secret").to_string(),
    );
    assert_eq!(t["Policies"], json!([{"ID": pid, "Name": "web"}]));

    let r = req(&node, "PUT", "/v1/kv/web/x", Some("1"), Some(&secret));
    assert_eq!((r.status, r.body.trim()), (200, "true"));
    let r = req(&node, "PUT", "/v1/kv/db/x", Some("1"), Some(&secret));
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        format!("Permission denied: token with AccessorID '{acc}' lacks permission 'key:write' on \"db/x\"")
    );
    // The secret works from every place Consul reads it.
    let url = format!("http://{}:8500/v1/kv/web/x", node.ip);
    let bearer = format!("Bearer {secret}");
    let r = http_request("GET", &url, None, &[("Authorization", bearer.as_str())]).expect("get");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = req(
        &node,
        "GET",
        &format!("/v1/kv/web/x?token={secret}"),
        None,
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // Unknown secrets and anonymous under default deny.
    let r = req(&node, "GET", "/v1/kv/web/x", None, Some("no-such-secret"));
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));
    let r = req(&node, "GET", "/v1/kv/web/x", None, None);
    assert_eq!(r.status, 403);
    assert_eq!(
        r.body,
        format!("Permission denied: token with AccessorID '{ANONYMOUS}' lacks permission 'key:read' on \"web/x\"")
    );
    // A non-management token may not manage ACLs.
    let r = req(&node, "GET", "/v1/acl/tokens", None, Some(&secret));
    assert_eq!(r.status, 403, "{}", r.body);

    // self, clone, read, list filter, delete.
    let me = ok(&node, "GET", "/v1/acl/token/self", None, Some(&secret));
    assert_eq!(me["AccessorID"], acc.as_str());
    let clone = ok(
        &node,
        "PUT",
        &format!("/v1/acl/token/{acc}/clone"),
        Some(r#"{"Description":"copy"}"#),
        Some(ROOT),
    );
    assert_eq!(clone["Description"], "copy");
    assert_eq!(clone["Policies"], t["Policies"]);
    assert_ne!(clone["SecretID"], t["SecretID"]);
    let clone_secret = clone["SecretID"].as_str().expect("secret").to_string();
    let r = req(&node, "PUT", "/v1/kv/web/y", Some("1"), Some(&clone_secret));
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = ok(
        &node,
        "GET",
        &format!("/v1/acl/tokens?policy={pid}"),
        None,
        Some(ROOT),
    );
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    let r = ok(
        &node,
        "DELETE",
        &format!("/v1/acl/token/{acc}"),
        None,
        Some(ROOT),
    );
    assert_eq!(r, json!(true));
    let r = req(
        &node,
        "GET",
        &format!("/v1/acl/token/{acc}"),
        None,
        Some(ROOT),
    );
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));
    let r = req(&node, "PUT", "/v1/kv/web/x", Some("1"), Some(&secret));
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));
    let r = req(
        &node,
        "DELETE",
        &format!("/v1/acl/token/{ANONYMOUS}"),
        None,
        Some(ROOT),
    );
    assert_eq!(r.status, 500);
    assert_eq!(
        r.body,
        "Delete operation not permitted on the anonymous token"
    );

    // Deleting the policy takes the grant away from the clone.
    assert_eq!(
        ok(
            &node,
            "DELETE",
            &format!("/v1/acl/policy/{pid}"),
            None,
            Some(ROOT)
        ),
        json!(true)
    );
    let r = req(
        &node,
        "GET",
        &format!("/v1/acl/policy/{pid}"),
        None,
        Some(ROOT),
    );
    assert_eq!(r.status, 404);
    let r = req(&node, "PUT", "/v1/kv/web/z", Some("1"), Some(&clone_secret));
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn roles_and_service_identities_grant() {
    let node = acl_server(127, 4, Some(ROOT));
    let policy = json!({"Name": "kv-read", "Rules": r#"{"key_prefix":{"":{"policy":"read"}}}"#});
    ok(
        &node,
        "PUT",
        "/v1/acl/policy",
        Some(&policy.to_string()),
        Some(ROOT),
    );
    let role = json!({"Name": "reader", "Policies": [{"Name": "kv-read"}]});
    let role = ok(
        &node,
        "PUT",
        "/v1/acl/role",
        Some(&role.to_string()),
        Some(ROOT),
    );
    assert_eq!(role["Policies"][0]["Name"], "kv-read");
    let by_name = ok(&node, "GET", "/v1/acl/role/name/reader", None, Some(ROOT));
    assert_eq!(by_name["ID"], role["ID"]);
    let t = ok(
        &node,
        "PUT",
        "/v1/acl/token",
        Some(
            &json!({"Roles": [{"Name": "reader"}], "ServiceIdentities": [{"ServiceName": "api"}]})
                .to_string(),
        ),
        Some(ROOT),
    );
    assert_eq!(t["Description"], "");
    let secret = t["SecretID"].as_str().expect("secret");
    ok(&node, "PUT", "/v1/kv/k", Some("v"), Some(ROOT));
    let r = req(&node, "GET", "/v1/kv/k", None, Some(secret));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = req(&node, "PUT", "/v1/kv/k", Some("w"), Some(secret));
    assert_eq!(r.status, 403, "{}", r.body);
    let svc = json!({"Name": "api", "Port": 80}).to_string();
    let r = req(
        &node,
        "PUT",
        "/v1/agent/service/register",
        Some(&svc),
        Some(secret),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let other = json!({"Name": "db", "Port": 81}).to_string();
    let r = req(
        &node,
        "PUT",
        "/v1/agent/service/register",
        Some(&other),
        Some(secret),
    );
    assert_eq!(r.status, 403, "{}", r.body);
}

#[test]
fn tokens_survive_a_restart() {
    let mut node = acl_server(128, 1, Some(ROOT));
    let policy = json!({"Name": "all-keys", "Rules": "key_prefix \"\" { policy = \"write\" }"});
    ok(
        &node,
        "PUT",
        "/v1/acl/policy",
        Some(&policy.to_string()),
        Some(ROOT),
    );
    let t = ok(
        &node,
        "PUT",
        "/v1/acl/token",
        Some(r#"{"Policies":[{"Name":"all-keys"}]}"#),
        Some(ROOT),
    );
    let secret = t["SecretID"].as_str().expect("secret").to_string();
    assert_eq!(
        req(&node, "PUT", "/v1/kv/a", Some("1"), Some(&secret)).status,
        200
    );
    node.terminate();
    start(&mut node);
    let r = req(&node, "PUT", "/v1/kv/b", Some("1"), Some(&secret));
    assert_eq!(r.status, 200, "{}", r.body);
    let again = ok(
        &node,
        "GET",
        &format!("/v1/acl/token/{}", t["AccessorID"].as_str().unwrap()),
        None,
        Some(ROOT),
    );
    assert_eq!(again["SecretID"], secret.as_str());
    assert_eq!(again["CreateIndex"], t["CreateIndex"]);
    // Still exactly one of each builtin after the new term's establishment.
    let tokens = ok(&node, "GET", "/v1/acl/tokens", None, Some(ROOT));
    assert_eq!(tokens.as_array().map(Vec::len), Some(3), "{tokens}");
}

#[test]
fn an_expired_token_stops_working() {
    let node = acl_server(128, 2, Some(ROOT));
    let policy = json!({"Name": "k", "Rules": "key_prefix \"\" { policy = \"read\" }"});
    ok(
        &node,
        "PUT",
        "/v1/acl/policy",
        Some(&policy.to_string()),
        Some(ROOT),
    );
    let r = req(
        &node,
        "PUT",
        "/v1/acl/token",
        Some(r#"{"Policies":[{"Name":"k"}],"ExpirationTTL":"5s"}"#),
        Some(ROOT),
    );
    assert_eq!(r.status, 500);
    assert_eq!(
        r.body,
        "Token Expiration TTL '5s' should be between 1m0s and 24h0m0s"
    );
    let t = ok(
        &node,
        "PUT",
        "/v1/acl/token",
        Some(r#"{"Policies":[{"Name":"k"}],"ExpirationTTL":"1m"}"#),
        Some(ROOT),
    );
    assert_eq!(t["ExpirationTTL"], "1m0s");
    assert!(t["ExpirationTime"].as_str().is_some());
    let secret = t["SecretID"].as_str().expect("secret").to_string();
    ok(&node, "PUT", "/v1/kv/k", Some("v"), Some(ROOT));
    assert_eq!(
        req(&node, "GET", "/v1/kv/k", None, Some(&secret)).status,
        200
    );
    std::thread::sleep(Duration::from_secs(61));
    let r = req(&node, "GET", "/v1/kv/k", None, Some(&secret));
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));
    // And the leader reaps it.
    let gone = eventually(Duration::from_secs(20), || {
        ok(&node, "GET", "/v1/acl/tokens", None, Some(ROOT))
            .as_array()
            .is_some_and(|a| a.len() == 2)
    });
    assert!(gone);
}

/// A client agent has no ACL state: it resolves tokens through a server,
/// and the server authorizes the writes it forwards again, so an agent
/// configured more loosely (here `default_policy = "allow"`) still cannot
/// write past the servers' ACLs.
#[test]
fn client_agents_resolve_through_servers_and_cannot_bypass_them() {
    let mut server = acl_server(128, 3, Some(ROOT));
    let mut client = Node::client(128, 4, &[3], &[]);
    let conf =
        json!({"acl": {"enabled": true, "default_policy": "allow", "tokens": {"agent": ROOT}}});
    let path = client.data_dir.parent().expect("parent").join("acl.json");
    std::fs::write(&path, conf.to_string()).expect("write config");
    client.args.push(format!("-config-file={}", path.display()));
    client.spawn();
    // The agent's own registration goes through with its agent token.
    let joined = eventually(Duration::from_secs(30), || {
        call(&server, "GET", "/v1/catalog/node/c4", None, Some(ROOT))
            .is_some_and(|r| r.status == 200 && r.body.trim() != "null")
    });
    assert!(
        joined,
        "client did not register; log:\n{}",
        client.log_text()
    );

    let policy = json!({"Name": "web", "Rules": "key_prefix \"web/\" { policy = \"write\" }"});
    ok(
        &server,
        "PUT",
        "/v1/acl/policy",
        Some(&policy.to_string()),
        Some(ROOT),
    );
    let t = ok(
        &server,
        "PUT",
        "/v1/acl/token",
        Some(r#"{"Policies":[{"Name":"web"}]}"#),
        Some(ROOT),
    );
    let acc = t["AccessorID"].as_str().expect("acc").to_string();
    let secret = t["SecretID"].as_str().expect("secret").to_string();
    let r = req(&client, "PUT", "/v1/kv/web/x", Some("1"), Some(&secret));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = req(&client, "PUT", "/v1/kv/db/x", Some("1"), Some(&secret));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.body,
        format!("Permission denied: token with AccessorID '{acc}' lacks permission 'key:write' on \"db/x\"")
    );
    let r = req(&client, "GET", "/v1/kv/web/x", None, Some("no-such-secret"));
    assert_eq!((r.status, r.body.as_str()), (403, "ACL not found"));
    // The client's own default allows an anonymous write; the server's
    // does not, and the server has the last word.
    let r = req(&client, "PUT", "/v1/kv/open", Some("1"), None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.body,
        format!("Permission denied: token with AccessorID '{ANONYMOUS}' lacks permission 'key:write' on \"open\"")
    );
    let r = req(&server, "GET", "/v1/kv/open", None, Some(ROOT));
    assert_eq!(r.status, 404);

    // A token that may write one service registers it through the client
    // agent: the sync re-posts the node as stored, which needs no
    // `node:write` on the server either. Its TTL check goes with it, and
    // deregistering the check needs only the service's write.
    let policy = json!({"Name": "api", "Rules": "service \"api\" { policy = \"write\" }"});
    ok(
        &server,
        "PUT",
        "/v1/acl/policy",
        Some(&policy.to_string()),
        Some(ROOT),
    );
    let t = ok(
        &server,
        "PUT",
        "/v1/acl/token",
        Some(r#"{"Policies":[{"Name":"api"}]}"#),
        Some(ROOT),
    );
    let api = t["SecretID"].as_str().expect("secret").to_string();
    let svc = json!({"ID": "api-1", "Name": "api", "Port": 9000, "Check": {"CheckID": "api-ttl", "TTL": "30s"}});
    let r = req(
        &client,
        "PUT",
        "/v1/agent/service/register",
        Some(&svc.to_string()),
        Some(&api),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = eventually(Duration::from_secs(10), || {
        call(&server, "GET", "/v1/catalog/service/api", None, Some(ROOT))
            .is_some_and(|r| r.body.contains("\"api-1\""))
    });
    assert!(
        listed,
        "api-1 did not reach the catalog; log:\n{}",
        client.log_text()
    );
    let r = req(
        &client,
        "PUT",
        "/v1/agent/check/deregister/api-ttl",
        Some(""),
        Some(&api),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = req(
        &client,
        "PUT",
        "/v1/agent/service/register",
        Some(&json!({"Name": "db", "Port": 1}).to_string()),
        Some(&api),
    );
    assert_eq!(
        r.status, 403,
        "another service's write is refused: {}",
        r.body
    );

    assert_eq!(
        header(
            &req(&client, "GET", "/v1/status/leader", None, None),
            "X-Consul-Default-ACL-Policy"
        ),
        Some("allow")
    );

    // With no server to ask, down_policy (extend-cache) answers: a token
    // the agent has cached keeps its grants, one it never saw is denied,
    // never a 500.
    let r = req(&client, "GET", "/v1/agent/services", None, Some(&api));
    assert!(r.body.contains("api-1"), "{}", r.body);
    server.kill9();
    let r = req(&client, "GET", "/v1/agent/services", None, Some(&api));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains("api-1"),
        "the cached token still reads: {}",
        r.body
    );
    let r = req(
        &client,
        "GET",
        "/v1/agent/services",
        None,
        Some("never-seen"),
    );
    assert_eq!(
        (r.status, r.body.trim()),
        (200, "{}"),
        "an uncached token is denied"
    );
    let r = req(
        &client,
        "PUT",
        "/v1/kv/web/y",
        Some("1"),
        Some("never-seen"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
}

/// A request without a token is checked on the client agent with its
/// `default` token, and forwarded with that token, so the server answers
/// it the same way (Consul's agent sends its user token in the RPC).
#[test]
fn a_client_agents_default_token_travels_with_its_writes() {
    let server = acl_server(128, 6, Some(ROOT));
    let policy = json!({"Name": "web", "Rules": "key_prefix \"web/\" { policy = \"write\" }"});
    ok(
        &server,
        "PUT",
        "/v1/acl/policy",
        Some(&policy.to_string()),
        Some(ROOT),
    );
    let t = ok(
        &server,
        "PUT",
        "/v1/acl/token",
        Some(r#"{"Policies":[{"Name":"web"}]}"#),
        Some(ROOT),
    );
    let web = t["SecretID"].as_str().expect("secret").to_string();
    let acc = t["AccessorID"].as_str().expect("accessor").to_string();
    let mut client = Node::client(128, 7, &[6], &[]);
    let conf = json!({"acl": {"enabled": true, "default_policy": "deny",
        "tokens": {"agent": ROOT, "default": web}}});
    let path = client.data_dir.parent().expect("parent").join("acl.json");
    std::fs::write(&path, conf.to_string()).expect("write config");
    client.args.push(format!("-config-file={}", path.display()));
    client.spawn();
    let joined = eventually(Duration::from_secs(30), || {
        call(&server, "GET", "/v1/catalog/node/c7", None, Some(ROOT))
            .is_some_and(|r| r.status == 200 && r.body.trim() != "null")
    });
    assert!(
        joined,
        "client did not register; log:\n{}",
        client.log_text()
    );
    let r = req(&client, "PUT", "/v1/kv/web/z", Some("1"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = req(&server, "GET", "/v1/kv/web/z?raw", None, Some(ROOT));
    assert_eq!((r.status, r.body.as_str()), (200, "1"));
    let r = req(&client, "PUT", "/v1/kv/db/z", Some("1"), None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(
        r.body,
        format!("Permission denied: token with AccessorID '{acc}' lacks permission 'key:write' on \"db/z\"")
    );
}

fn cli(node: &Node, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(common::BIN)
        .args(args)
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_TOKEN_FILE")
        .env("CONSUL_HTTP_ADDR", format!("{}:8500", node.ip))
        .envs(env.iter().copied())
        .output()
        .expect("run cli");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_acl_cli_speaks_consuls_shapes() {
    let node = acl_server(128, 5, None);
    let (code, out, err) = cli(&node, &["acl", "bootstrap"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Description:      Bootstrap Token (Global Management)"),
        "{out}"
    );
    assert!(
        out.contains("Policies:\n   00000000-0000-0000-0000-000000000001 - global-management"),
        "{out}"
    );
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("SecretID:"))
        .map(|s| s.trim().to_string())
        .expect("secret line");
    let (code, _, err) = cli(&node, &["acl", "bootstrap"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("Failed ACL bootstrapping: Unexpected response code: 403 (Permission denied: ACL bootstrap no longer allowed"), "{err}");

    let token_file = node.data_dir.parent().expect("parent").join("token");
    std::fs::write(&token_file, format!("{secret}\n")).expect("write token");
    let tf = format!("-token-file={}", token_file.display());
    let (code, out, err) = cli(
        &node,
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "web",
            "-rules",
            // The one-line form of Consul's docs: two blocks on a line (HCL 1).
            "service \"web\" { policy = \"write\" } key_prefix \"web/\" { policy = \"write\" }",
            &tf,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Name:         web"), "{out}");
    assert!(
        out.contains("Rules:\nservice \"web\" { policy = \"write\" } key_prefix"),
        "{out}"
    );
    let env = [("CONSUL_HTTP_TOKEN", secret.as_str())];
    let (code, out, _) = cli(&node, &["acl", "policy", "list"], &env);
    assert_eq!(code, 0);
    assert!(
        out.contains("global-management:\n   ID:           00000000-0000-0000-0000-000000000001"),
        "{out}"
    );
    assert!(out.contains("web:\n   ID:"), "{out}");
    let (code, out, _) = cli(&node, &["acl", "policy", "read", "-name", "web"], &env);
    assert_eq!(code, 0);
    assert!(out.starts_with("ID:           "), "{out}");

    let (code, out, err) = cli(
        &node,
        &[
            "acl",
            "token",
            "create",
            "-description",
            "web writer",
            "-policy-name",
            "web",
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Description:      web writer"), "{out}");
    let accessor = out
        .lines()
        .find_map(|l| l.strip_prefix("AccessorID:"))
        .map(|s| s.trim().to_string())
        .expect("accessor line");
    let new_secret = out
        .lines()
        .find_map(|l| l.strip_prefix("SecretID:"))
        .map(|s| s.trim().to_string())
        .expect("secret line");
    assert_eq!(
        req(&node, "PUT", "/v1/kv/web/a", Some("1"), Some(&new_secret)).status,
        200
    );
    let (code, out, _) = cli(
        &node,
        &["acl", "token", "read", "-accessor-id", &accessor],
        &env,
    );
    assert_eq!(code, 0);
    assert!(
        out.contains("Policies:\n   ") && out.contains(" - web"),
        "{out}"
    );
    let (code, out, _) = cli(&node, &["acl", "token", "list", "-token", &secret], &[]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("AccessorID:").count(), 3, "{out}");
    let (code, out, err) = cli(
        &node,
        &["acl", "token", "delete", "-accessor-id", &accessor],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!("Token {accessor:?} deleted successfully")
    );
    let (code, _, err) = cli(&node, &["acl", "token", "list"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("403"), "{err}");
    let (code, out, _) = cli(&node, &["acl", "policy", "delete", "-name", "web"], &env);
    assert_eq!(code, 0);
    assert!(out.contains("deleted successfully"), "{out}");
}
