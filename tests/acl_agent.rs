//! The agent's own ACL tokens against the real binary: `PUT
//! /v1/agent/token/:type` and `cairn acl set-agent-token`, token
//! persistence across restarts, DNS under a token set at runtime, the
//! agent token on anti-entropy and check sync, and `/v1/acl/*` on client
//! agents (answered by a server).

mod common;

use common::acl::{
    acl_conf, add_config, call, denial, ok, req, token_with, wait_acl_ready, ANONYMOUS,
};
use common::cluster::Node;
use common::eventually;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ROOT: &str = "9a7b5c3d1e2f40618293a4b5c6d7e8f9";

/// A one-server cluster on 127.0.`net`.`host` with ACLs on (default deny)
/// and `extra` merged into its `acl {}` block.
fn acl_server(net: u8, host: u8, extra: Value) -> Node {
    let mut node = Node::server(net, host, 1, &[], &[]);
    let mut conf = acl_conf("deny", json!({"initial_management": ROOT}));
    if let (Some(acl), Some(more)) = (conf["acl"].as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            acl.insert(k.clone(), v.clone());
        }
    }
    add_config(&mut node, "acl.json", &conf);
    node.spawn();
    wait_acl_ready(&node);
    node
}

/// A client agent on 127.0.`net`.`host` joined to the server at `.server`,
/// with ACLs on (default deny) and `tokens`; not waited for.
fn acl_client(net: u8, host: u8, server: u8, tokens: Value, extra: &[(&str, Value)]) -> Node {
    let mut node = Node::client(net, host, &[server], &[]);
    add_config(&mut node, "acl.json", &acl_conf("deny", tokens));
    for (file, conf) in extra {
        add_config(&mut node, file, conf);
    }
    node.spawn();
    node
}

/// Waits until `server`'s catalog has `node`.
fn wait_registered(server: &Node, client: &Node) {
    let path = format!("/v1/catalog/node/{}", client.name);
    let joined = eventually(Duration::from_secs(30), || {
        call(server, "GET", &path, None, Some(ROOT))
            .is_some_and(|r| r.status == 200 && r.body.trim() != "null")
    });
    assert!(
        joined,
        "{} did not register; log:\n{}",
        client.name,
        client.log_text()
    );
}

fn set_token(node: &Node, kind: &str, value: &str, caller: Option<&str>) -> common::Resp {
    let body = json!({ "Token": value }).to_string();
    req(
        node,
        "PUT",
        &format!("/v1/agent/token/{kind}"),
        Some(&body),
        caller,
    )
}

fn cli(node: &Node, args: &[&str], token: Option<&str>) -> (i32, String, String) {
    let mut cmd = std::process::Command::new(common::BIN);
    cmd.args(args)
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_TOKEN_FILE")
        .env("CONSUL_HTTP_ADDR", format!("{}:8500", node.ip));
    if let Some(t) = token {
        cmd.env("CONSUL_HTTP_TOKEN", t);
    }
    let out = cmd.output().expect("run cli");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The endpoint in Consul's order: 401 with ACLs off, `agent:write` on the
/// agent's node (not `acl:write`), the body, the type; and the token set
/// is the one in use from the next request on.
#[test]
fn the_agent_token_endpoint_answers_as_consul_does() {
    let node = acl_server(155, 1, json!({}));
    ok(&node, "PUT", "/v1/kv/app/x", Some("v"), Some(ROOT));
    let (_, reader) = token_with(
        &node,
        ROOT,
        "app-read",
        r#"key_prefix "app/" { policy = "read" }"#,
    );
    let (_, agent_writer) = token_with(
        &node,
        ROOT,
        "agent-write",
        r#"agent "s1" { policy = "write" }"#,
    );

    let r = set_token(&node, "default", &reader, None);
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body, denial(ANONYMOUS, "agent:write", "s1"));
    // acl:write is not what it takes (Consul's code checks agent:write).
    let (acl_acc, acl_writer) = token_with(&node, ROOT, "acl-write", r#"acl = "write""#);
    let r = set_token(&node, "default", &reader, Some(&acl_writer));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.body, denial(&acl_acc, "agent:write", "s1"));

    assert_eq!(req(&node, "GET", "/v1/kv/app/x", None, None).status, 403);
    let r = set_token(&node, "default", &reader, Some(&agent_writer));
    assert_eq!((r.status, r.body.as_str()), (200, ""));
    let r = req(&node, "GET", "/v1/kv/app/x?raw", None, None);
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "v"),
        "a request without a token now acts with the new default token"
    );
    // Consul's legacy name; an empty token unsets it.
    let r = set_token(&node, "acl_token", "", Some(&agent_writer));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(req(&node, "GET", "/v1/kv/app/x", None, None).status, 403);

    let r = set_token(&node, "bogus", "x", Some(ROOT));
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, "Token \"bogus\" is unknown")
    );
    let r = set_token(&node, "bogus", "x", None);
    assert_eq!(r.status, 403, "permission is checked before the type");
    let r = req(
        &node,
        "PUT",
        "/v1/agent/token/default",
        Some("{nope"),
        Some(ROOT),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.starts_with("Request decode failed: "), "{}", r.body);
    let r = req(&node, "GET", "/v1/agent/token/default", None, Some(ROOT));
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("OPTIONS,PUT"));

    // The CLI, with Consul's output.
    let (code, out, err) = cli(
        &node,
        &["acl", "set-agent-token", "default", &reader],
        Some(ROOT),
    );
    assert_eq!(
        (code, out.as_str()),
        (0, "ACL token \"default\" set successfully\n"),
        "{err}"
    );
    assert_eq!(req(&node, "GET", "/v1/kv/app/x", None, None).status, 200);
    // Without a token the request acts with the default token set above.
    let (code, _, err) = cli(&node, &["acl", "set-agent-token", "agent", "x"], None);
    assert_eq!(code, 1);
    let reader_acc = reader_accessor(&node, &reader);
    assert_eq!(
        err.trim(),
        format!(
            "Failed to set ACL token \"agent\": Unexpected response code: 403 ({})",
            denial(&reader_acc, "agent:write", "s1")
        )
    );
    let (code, _, err) = cli(&node, &["acl", "set-agent-token", "nope", "x"], Some(ROOT));
    assert_eq!((code, err.trim()), (1, "Unknown token type"));
    let (code, _, err) = cli(&node, &["acl", "set-agent-token", "dns"], Some(ROOT));
    assert_eq!((code, err.trim()), (1, "Error! Missing TOKEN argument"));

    // ACLs off: 401, whatever the token.
    let mut plain = Node::new("plain", 155, 2, vec!["-dev".into()]);
    plain.spawn();
    let answered = eventually(Duration::from_secs(30), || {
        call(
            &plain,
            "PUT",
            "/v1/agent/token/default",
            Some(r#"{"Token":"x"}"#),
            None,
        )
        .is_some_and(|r| r.status == 401 && r.body == "ACL support disabled")
    });
    assert!(answered, "no 401; log:\n{}", plain.log_text());
}

fn reader_accessor(node: &Node, secret: &str) -> String {
    let t = ok(node, "GET", "/v1/acl/token/self", None, Some(secret));
    t["AccessorID"].as_str().expect("accessor").to_string()
}

/// The description of the token a request without one acts with.
fn default_token_description(node: &Node) -> String {
    let r = req(node, "GET", "/v1/acl/token/self", None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["Description"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

const CONFIG_DEFAULT: &str = "0c0f1e7a-3b2d-4c5e-8f90-a1b2c3d4e5f6";

/// Makes the token the config names as `default`, and another one;
/// returns the other one's secret.
fn default_tokens(node: &Node) -> String {
    let body = json!({"SecretID": CONFIG_DEFAULT, "Description": "config default",
        "Policies": [{"ID": "00000000-0000-0000-0000-000000000001"}]});
    ok(
        node,
        "PUT",
        "/v1/acl/token",
        Some(&body.to_string()),
        Some(ROOT),
    );
    let body = json!({"Description": "api default",
        "Policies": [{"ID": "00000000-0000-0000-0000-000000000001"}]});
    let t = ok(
        node,
        "PUT",
        "/v1/acl/token",
        Some(&body.to_string()),
        Some(ROOT),
    );
    t["SecretID"].as_str().expect("secret").to_string()
}

/// With `enable_token_persistence` a token set through the API is in
/// `acl-tokens.json` (0600, Consul's field names) and beats the config's
/// after a restart, with Consul's warning; without it, the restart brings
/// back the config's token.
#[test]
fn persisted_tokens_outlive_a_restart_and_unpersisted_ones_do_not() {
    use std::os::unix::fs::PermissionsExt;
    let mut kept = acl_server(
        156,
        1,
        json!({"enable_token_persistence": true, "tokens": {"initial_management": ROOT, "default": CONFIG_DEFAULT}}),
    );
    let mut lost = acl_server(
        156,
        2,
        json!({"tokens": {"initial_management": ROOT, "default": CONFIG_DEFAULT}}),
    );
    for node in [&kept, &lost] {
        let api_default = default_tokens(node);
        assert_eq!(default_token_description(node), "config default");
        let r = set_token(node, "default", &api_default, Some(ROOT));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(default_token_description(node), "api default");
        if std::ptr::eq(node, &kept) {
            let file = node.data_dir.join("acl-tokens.json");
            let saved: Value = serde_json::from_str(
                &std::fs::read_to_string(&file).expect("acl-tokens.json written"),
            )
            .expect("json");
            assert_eq!(saved, json!({"default": api_default}));
            let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        } else {
            assert!(!node.data_dir.join("acl-tokens.json").exists());
        }
    }
    for node in [&mut kept, &mut lost] {
        node.terminate();
        node.spawn();
        wait_acl_ready(node);
    }
    assert_eq!(default_token_description(&kept), "api default");
    assert!(
        kept.log_text().contains(
            "\"default\" token present in both the configuration and persisted token store, using the persisted token"
        ),
        "{}",
        kept.log_text()
    );
    assert_eq!(default_token_description(&lost), "config default");
}

fn dig_a(node: &Node, name: &str) -> (String, Vec<String>) {
    let out = node.dig(&[name, "A"]);
    let status = out
        .split("status: ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_string();
    let answers = node.dig(&["+short", name, "A"]);
    (status, answers.lines().map(str::to_string).collect())
}

/// A `dns` token set at runtime is what DNS answers under from the next
/// query on, on a server (local tables) and on a client agent (resolved
/// through a server).
#[test]
fn dns_answers_under_a_dns_token_set_at_runtime() {
    let server = acl_server(157, 1, json!({}));
    let client = acl_client(157, 2, 1, json!({"agent": ROOT}), &[]);
    wait_registered(&server, &client);
    let reg = json!({"Node": "ext", "Address": "127.0.157.50",
        "Service": {"Service": "web", "Port": 80}});
    ok(
        &server,
        "PUT",
        "/v1/catalog/register",
        Some(&reg.to_string()),
        Some(ROOT),
    );
    // A default read waits for the client's view to reach the leader's
    // index, so its DNS then knows the service too.
    let seen = ok(&client, "GET", "/v1/catalog/service/web", None, Some(ROOT));
    assert_eq!(seen.as_array().map(Vec::len), Some(1), "{seen}");
    for node in [&server, &client] {
        let (status, answers) = dig_a(node, "web.service.consul");
        assert_eq!(status, "NXDOMAIN", "{}: {answers:?}", node.name);
    }
    let (_, dns) = token_with(
        &server,
        ROOT,
        "dns",
        "service_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }",
    );
    for node in [&server, &client] {
        let r = set_token(node, "dns", &dns, Some(ROOT));
        assert_eq!(r.status, 200, "{}: {}", node.name, r.body);
        let (status, answers) = dig_a(node, "web.service.consul");
        assert_eq!(status, "NOERROR", "{}", node.name);
        assert_eq!(answers, vec!["127.0.157.50".to_string()], "{}", node.name);
    }
}

fn lines_with(node: &Node, needle: &str) -> usize {
    node.log_text()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

fn catalog_check_status(server: &Node, check: &str) -> Option<String> {
    let r = call(server, "GET", "/v1/health/checks/web", None, Some(ROOT))?;
    let checks: Value = serde_json::from_str(&r.body).ok()?;
    checks
        .as_array()?
        .iter()
        .find(|c| c["CheckID"] == check)
        .and_then(|c| c["Status"].as_str())
        .map(str::to_string)
}

/// Under default deny a client agent's own writes carry its `agent` token
/// and the server vets them with it: without one the agent cannot
/// register itself or its services (and says so, and keeps trying); an
/// agent token set at runtime gets them into the catalog at once; a check
/// change made with a management token is still written with the agent
/// token, so an agent token that may not write the service is refused.
#[test]
fn anti_entropy_and_check_sync_write_with_the_agent_token() {
    let server = acl_server(158, 1, json!({}));
    let service = json!({"service": {"name": "web", "port": 80,
        "check": {"id": "web-ttl", "ttl": "300s"}}});
    let client = acl_client(158, 2, 1, json!({}), &[("web.json", service)]);
    let blocked = eventually(Duration::from_secs(30), || {
        lines_with(&client, "Node info update blocked by ACLs") >= 2
    });
    assert!(blocked, "no refusals logged; log:\n{}", client.log_text());
    assert!(
        client
            .log_text()
            .contains(&denial(ANONYMOUS, "node:write", "c2")),
        "{}",
        client.log_text()
    );
    // The leader lists the member from gossip; what the agent itself
    // writes (its addresses, its services) is missing.
    let node = ok(&server, "GET", "/v1/catalog/node/c2", None, Some(ROOT));
    assert_eq!(node["Services"], json!({}), "{node}");
    assert_eq!(node["Node"]["TaggedAddresses"], json!({}), "{node}");

    let (_, agent) = token_with(
        &server,
        ROOT,
        "c2-agent",
        "node \"c2\" { policy = \"write\" }\nservice_prefix \"\" { policy = \"write\" }",
    );
    let r = set_token(&client, "agent", &agent, Some(ROOT));
    assert_eq!(r.status, 200, "{}", r.body);
    let set_at = Instant::now();
    let synced = eventually(Duration::from_secs(20), || {
        call(&server, "GET", "/v1/catalog/service/web", None, Some(ROOT))
            .is_some_and(|r| r.body.contains("\"c2\""))
    });
    assert!(
        synced,
        "web never reached the catalog; log:\n{}",
        client.log_text()
    );
    assert!(
        set_at.elapsed() < Duration::from_secs(10),
        "the token change itself started the sync ({:?})",
        set_at.elapsed()
    );

    // Check sync carries the agent token.
    let r = req(
        &client,
        "PUT",
        "/v1/agent/check/pass/web-ttl",
        Some(""),
        Some(ROOT),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        catalog_check_status(&server, "web-ttl").as_deref(),
        Some("passing")
    );

    // An agent token that may write the node but not the service: the
    // caller's management token does not help the check's write.
    let (_, node_only) = token_with(
        &server,
        ROOT,
        "c2-node",
        r#"node "c2" { policy = "write" }"#,
    );
    let r = set_token(&client, "agent", &node_only, Some(ROOT));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = req(
        &client,
        "PUT",
        "/v1/agent/check/fail/web-ttl",
        Some(""),
        Some(ROOT),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let refused = eventually(Duration::from_secs(10), || {
        lines_with(&client, "Check registration blocked by ACLs") >= 1
    });
    assert!(
        refused,
        "check sync was not refused; log:\n{}",
        client.log_text()
    );
    assert_eq!(
        catalog_check_status(&server, "web-ttl").as_deref(),
        Some("passing"),
        "the refused write did not happen"
    );
    // The good token again: the next pass writes the check's state.
    let r = set_token(&client, "agent", &agent, Some(ROOT));
    assert_eq!(r.status, 200, "{}", r.body);
    let caught_up = eventually(Duration::from_secs(15), || {
        catalog_check_status(&server, "web-ttl").as_deref() == Some("critical")
    });
    assert!(caught_up, "log:\n{}", client.log_text());
}

/// `/v1/acl/*` on a client agent is the server's answer: the same lists and
/// index, the same errors, writes, `token/self`, and blocking queries.
#[test]
fn a_client_agents_acl_endpoints_are_the_servers() {
    let server = acl_server(159, 1, json!({}));
    let client = acl_client(159, 2, 1, json!({"agent": ROOT}), &[]);
    wait_registered(&server, &client);
    for path in ["/v1/acl/tokens", "/v1/acl/policies", "/v1/acl/roles"] {
        let s = req(&server, "GET", path, None, Some(ROOT));
        let c = req(&client, "GET", path, None, Some(ROOT));
        assert_eq!((c.status, s.status), (200, 200), "{path}: {}", c.body);
        assert_eq!(c.json(), s.json(), "{path}");
        assert!(c.index() > 0, "{path}");
        assert_eq!(c.index(), s.index(), "{path}");
        assert_eq!(c.header("X-Consul-KnownLeader"), Some("true"), "{path}");
    }
    let me = ok(&client, "GET", "/v1/acl/token/self", None, Some(ROOT));
    assert_eq!(me["Description"], "Initial Management Token");
    assert_eq!(me["SecretID"], ROOT);

    let policy = json!({"Name": "from-client", "Rules": "key_prefix \"c/\" { policy = \"read\" }"});
    let made = ok(
        &client,
        "PUT",
        "/v1/acl/policy",
        Some(&policy.to_string()),
        Some(ROOT),
    );
    let id = made["ID"].as_str().expect("ID");
    let on_server = ok(
        &server,
        "GET",
        &format!("/v1/acl/policy/{id}"),
        None,
        Some(ROOT),
    );
    assert_eq!(on_server["Name"], "from-client");
    assert_eq!(
        ok(&client, "GET", "/v1/acl/policies", None, Some(ROOT)),
        ok(&server, "GET", "/v1/acl/policies", None, Some(ROOT))
    );

    // Errors come through unchanged.
    for (method, path, body, token) in [
        ("GET", "/v1/acl/tokens".to_string(), None, None),
        (
            "GET",
            "/v1/acl/tokens".to_string(),
            None,
            Some("no-such-secret"),
        ),
        (
            "GET",
            "/v1/acl/policy/0d7c3f1e-5d5a-4d0c-9b1a-6a1f0e2d3c4b".to_string(),
            None,
            Some(ROOT),
        ),
        (
            "PUT",
            "/v1/acl/policy".to_string(),
            Some("{bad"),
            Some(ROOT),
        ),
        (
            "PUT",
            "/v1/acl/policy".to_string(),
            Some(r#"{"Name":"from-client"}"#),
            Some(ROOT),
        ),
        ("PUT", "/v1/acl/tokens".to_string(), None, Some(ROOT)),
    ] {
        let s = req(&server, method, &path, body, token);
        let c = req(&client, method, &path, body, token);
        assert_eq!((c.status, &c.body), (s.status, &s.body), "{method} {path}");
        assert_ne!(c.status, 200, "{method} {path}");
    }

    // A blocking query waits on the server and returns with the change.
    let index = req(&client, "GET", "/v1/acl/policies", None, Some(ROOT)).index();
    let writer = {
        let ip = server.ip.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(800));
            let body = json!({"Name": "later", "Rules": ""}).to_string();
            common::http_request(
                "PUT",
                &format!("http://{ip}:8500/v1/acl/policy"),
                Some(body.as_bytes()),
                &[("X-Consul-Token", ROOT)],
            )
        })
    };
    let started = Instant::now();
    let r = req(
        &client,
        "GET",
        &format!("/v1/acl/policies?index={index}&wait=20s"),
        None,
        Some(ROOT),
    );
    let waited = started.elapsed();
    let made = writer.join().expect("writer").expect("policy write");
    assert_eq!(made.status, 200, "{}", made.body);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.index() > index);
    assert!(r.body.contains("\"later\""), "{}", r.body);
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
}
