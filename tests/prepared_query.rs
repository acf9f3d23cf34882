//! Prepared queries against the real binary: `/v1/query` create, list,
//! get, update and delete with Consul's shapes and error texts; execute
//! with `OnlyPassing`, tags and `!tag`, limits and templates; explain; and
//! `<name>.query.consul` answered over DNS (A and SRV, the query's TTL),
//! an instance dropping out once its check fails.

mod common;

use common::{eventually, TestAgent};
use serde_json::{json, Value};
use std::time::Duration;

const IP: &str = "127.0.189.1";

/// Registers an external node with one service and its check.
fn register(
    a: &TestAgent,
    node: &str,
    addr: &str,
    id: &str,
    svc: &str,
    tags: &[&str],
    status: &str,
) {
    let body = json!({
        "Node": node,
        "Address": addr,
        "Service": {"ID": id, "Service": svc, "Tags": tags, "Port": 8080},
        "Checks": [{"CheckID": format!("{id}-check"), "Name": id, "Status": status, "ServiceID": id}],
    });
    let r = a.put("/v1/catalog/register", &body.to_string());
    assert_eq!(r.status, 200, "register {id}: {}", r.body);
}

fn post(a: &TestAgent, body: &Value) -> common::Resp {
    a.request("POST", "/v1/query", Some(body.to_string().as_bytes()), &[])
        .expect("POST /v1/query")
}

fn create(a: &TestAgent, body: Value) -> String {
    let r = post(a, &body);
    assert_eq!(r.status, 200, "create: {}", r.body);
    r.json()["ID"].as_str().expect("ID").to_string()
}

/// The node names an execution returned, sorted.
fn executed_nodes(a: &TestAgent, id_or_name: &str) -> Vec<String> {
    let r = a.get_ok(&format!("/v1/query/{id_or_name}/execute"));
    assert_eq!(r.status, 200, "execute {id_or_name}: {}", r.body);
    let mut v: Vec<String> = r.json()["Nodes"]
        .as_array()
        .expect("Nodes")
        .iter()
        .map(|n| n["Node"]["Node"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn create_list_get_update_delete_and_errors() {
    let a = TestAgent::dev_at(IP, &[]);
    let id = create(
        &a,
        json!({"Name": "web-q", "Token": "", "Service": {"Service": "web", "Tags": ["primary"]},
               "DNS": {"TTL": "7s"}}),
    );
    assert_eq!(id.len(), 36, "{id}");

    let list = a.get_ok("/v1/query");
    assert_eq!(list.status, 200);
    assert!(list.index() > 1, "X-Consul-Index on the list");
    let all = list.json();
    assert_eq!(all.as_array().unwrap().len(), 1);
    let q = &all[0];
    assert_eq!(q["ID"], id);
    assert_eq!(q["Name"], "web-q");
    assert_eq!(q["Service"]["Service"], "web");
    assert_eq!(q["Service"]["Tags"], json!(["primary"]));
    assert_eq!(q["Service"]["Failover"]["NearestN"], 0);
    assert_eq!(q["DNS"]["TTL"], "7s");
    assert_eq!(q["Template"]["Type"], "");
    assert!(q["CreateIndex"].as_u64().unwrap() > 0);

    let one = a.get_ok(&format!("/v1/query/{id}"));
    assert_eq!(one.status, 200);
    assert_eq!(one.json().as_array().unwrap().len(), 1);
    assert_eq!(one.json()[0]["ID"], id);

    // Replace: the ID comes from the URL.
    let r = a.put(
        &format!("/v1/query/{id}"),
        &json!({"Name": "web-q", "Service": {"Service": "web", "OnlyPassing": true}}).to_string(),
    );
    assert_eq!(r.status, 200, "update: {}", r.body);
    assert_eq!(r.body, "");
    let q = a.get_ok(&format!("/v1/query/{id}")).json();
    assert_eq!(q[0]["Service"]["OnlyPassing"], true);
    assert_eq!(q[0]["Service"]["Tags"], Value::Null);
    assert!(q[0]["ModifyIndex"].as_u64() > q[0]["CreateIndex"].as_u64());

    // Consul's refusals.
    let r = post(&a, &json!({"Name": "WEB-Q", "Service": {"Service": "web"}}));
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "name 'WEB-Q' aliases an existing query name")
    );
    let r = post(&a, &json!({"Name": "x", "Service": {}}));
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            500,
            "Invalid prepared query: Must provide a Service name to query"
        )
    );
    let r = post(&a, &json!({"Service": {"Service": "web"}}));
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "Invalid prepared query: Must be bound to a session")
    );
    let r = post(
        &a,
        &json!({"ID": id, "Name": "y", "Service": {"Service": "web"}}),
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (500, "ID must be empty when creating a new prepared query")
    );
    let r = post(
        &a,
        &json!({"Name": "geo-", "Template": {"Type": "name_prefix_match", "Regexp": "^geo-("},
                "Service": {"Service": "${match(1)}"}}),
    );
    assert_eq!(r.status, 500, "{}", r.body);
    assert!(
        r.body.starts_with(
            "failed compiling template: Bad Regexp: error parsing regexp: missing closing )"
        ),
        "{}",
        r.body
    );
    let r = a
        .request("POST", "/v1/query", Some(b"{not json"), &[])
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("Request decode failed: "), "{}", r.body);

    let unknown = "00000000-1111-2222-3333-444444444444";
    for path in [
        format!("/v1/query/{unknown}"),
        format!("/v1/query/{unknown}/execute"),
        format!("/v1/query/{unknown}/explain"),
        "/v1/query/no-such-name/execute".to_string(),
    ] {
        let r = a.get_ok(&path);
        assert_eq!(
            (r.status, r.body.as_str()),
            (404, "Query not found"),
            "{path}"
        );
    }
    let r = a
        .request("PUT", &format!("/v1/query/{id}/execute"), None, &[])
        .unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("Allow"), Some("OPTIONS,GET"));
    let r = a
        .request("OPTIONS", &format!("/v1/query/{id}/explain"), None, &[])
        .unwrap();
    assert_eq!((r.status, r.header("Allow")), (200, Some("OPTIONS,GET")));
    let r = a
        .request("OPTIONS", &format!("/v1/query/{id}"), None, &[])
        .unwrap();
    assert_eq!(r.header("Allow"), Some("OPTIONS,GET,PUT,DELETE"));
    let r = a.get_ok(&format!("/v1/query/{id}/execute?limit=x"));
    assert_eq!(r.status, 500);
    assert!(r.body.starts_with("Bad limit: "), "{}", r.body);

    assert_eq!(a.delete(&format!("/v1/query/{id}")).status, 200);
    assert_eq!(a.get_ok(&format!("/v1/query/{id}")).status, 404);
    assert_eq!(a.get_ok("/v1/query").json(), json!([]));
    let r = a.delete(&format!("/v1/query/{id}"));
    assert_eq!(
        (r.status, r.body),
        (
            500,
            format!("Cannot modify non-existent prepared query: '{id}'")
        )
    );
}

#[test]
fn execute_filters_health_and_tags_and_templates_render() {
    let a = TestAgent::dev_at("127.0.189.2", &[]);
    register(
        &a,
        "n1",
        "127.0.189.11",
        "web1",
        "web",
        &["primary"],
        "passing",
    );
    register(
        &a,
        "n2",
        "127.0.189.12",
        "web2",
        "web",
        &["primary"],
        "warning",
    );
    register(&a, "n3", "127.0.189.13", "web3", "web", &["v1"], "passing");
    register(
        &a,
        "n4",
        "127.0.189.14",
        "web4",
        "web",
        &["Primary", "canary"],
        "passing",
    );
    register(
        &a,
        "n5",
        "127.0.189.15",
        "web5",
        "web",
        &["primary"],
        "critical",
    );

    let strict = create(
        &a,
        json!({"Name": "strict", "Service": {"Service": "web", "OnlyPassing": true,
               "Tags": ["primary", "!canary"]}, "DNS": {"TTL": "3s"}}),
    );
    let loose = create(
        &a,
        json!({"Name": "loose", "Service": {"Service": "web", "Tags": ["primary"]}}),
    );
    create(
        &a,
        json!({"Name": "ignoring", "Service": {"Service": "web", "IgnoreCheckIDs": ["web5-check"],
               "Tags": ["primary", "!canary"]}}),
    );

    assert_eq!(executed_nodes(&a, &strict), ["n1"]);
    assert_eq!(executed_nodes(&a, "strict"), ["n1"]);
    assert_eq!(executed_nodes(&a, &loose), ["n1", "n2", "n4"]);
    assert_eq!(executed_nodes(&a, "ignoring"), ["n1", "n2", "n5"]);

    let r = a.get_ok("/v1/query/strict/execute");
    let body = r.json();
    assert_eq!(body["Service"], "web");
    assert_eq!(body["DNS"]["TTL"], "3s");
    assert_eq!(body["Datacenter"], "dc1");
    assert_eq!(body["Failovers"], 0);
    assert_eq!(body["Nodes"][0]["Service"]["ID"], "web1");
    assert_eq!(body["Nodes"][0]["Node"]["Address"], "127.0.189.11");
    assert_eq!(body["Nodes"][0]["Checks"][0]["Status"], "passing");
    assert!(r.header("X-Consul-Index").is_some());
    assert_eq!(r.header("X-Consul-KnownLeader"), Some("true"));

    let limited = a.get_ok("/v1/query/loose/execute?limit=2").json();
    assert_eq!(limited["Nodes"].as_array().unwrap().len(), 2);

    // A template: the longest name prefix picks it, the regexp's group
    // becomes the service, `${name.full}` a meta value.
    let tpl = create(
        &a,
        json!({"Name": "geo-", "Template": {"Type": "name_prefix_match", "Regexp": "^geo-(.*)$"},
               "Service": {"Service": "${match(1)}", "OnlyPassing": true, "Tags": ["${name.suffix}", "!canary"]}}),
    );
    register(&a, "n6", "127.0.189.16", "api1", "api", &["api"], "passing");
    let explained = a.get_ok("/v1/query/geo-web/explain");
    assert_eq!(explained.status, 200, "{}", explained.body);
    let q = &explained.json()["Query"];
    assert_eq!(q["ID"], tpl);
    assert_eq!(q["Service"]["Service"], "web");
    assert_eq!(q["Service"]["Tags"], json!(["web", "!canary"]));
    assert_eq!(q["Template"]["Regexp"], "^geo-(.*)$");
    assert_eq!(executed_nodes(&a, "geo-api"), ["n6"]);
    // A template runs by name only.
    let r = a.get_ok(&format!("/v1/query/{tpl}/execute"));
    assert_eq!(r.status, 500, "{}", r.body);
}

/// The A records (as `+short` text) of `name`.
fn dig_short(a: &TestAgent, name: &str, qtype: &str) -> Vec<String> {
    let mut v: Vec<String> = a
        .dig(&[name, qtype, "+short"])
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

#[test]
fn prepared_queries_answer_over_dns() {
    let a = TestAgent::dev_at("127.0.190.1", &[]);
    register(&a, "api-a", "127.0.190.21", "api1", "api", &[], "passing");
    register(&a, "api-b", "127.0.190.22", "api2", "api", &[], "passing");
    let id = create(
        &a,
        json!({"Name": "api-q", "Service": {"Service": "api"}, "DNS": {"TTL": "7s"}}),
    );

    let both = ["127.0.190.21", "127.0.190.22"];
    assert_eq!(dig_short(&a, "api-q.query.consul", "A"), both);
    assert_eq!(dig_short(&a, "api-q.query.dc1.consul", "A"), both);
    assert_eq!(dig_short(&a, &format!("{id}.query.consul"), "A"), both);

    let answer = a.dig(&["api-q.query.consul", "A", "+noall", "+answer"]);
    assert_eq!(
        answer.lines().filter(|l| !l.is_empty()).count(),
        2,
        "{answer}"
    );
    for line in answer.lines().filter(|l| !l.is_empty()) {
        let ttl: u32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert_eq!(ttl, 7, "the query's DNS TTL: {line}");
    }
    let srv = dig_short(&a, "api-q.query.consul", "SRV");
    assert_eq!(
        srv,
        [
            "1 1 8080 api-a.node.dc1.consul.",
            "1 1 8080 api-b.node.dc1.consul."
        ]
    );
    let rfc2782 = dig_short(&a, "_api-q._tcp.query.consul", "SRV");
    assert_eq!(rfc2782.len(), 2, "{rfc2782:?}");
    let additional = a.dig(&["api-q.query.consul", "SRV", "+noall", "+additional"]);
    assert!(additional.contains("127.0.190.21"), "{additional}");

    let nx = a.dig(&["nothing.query.consul", "A"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    let other_dc = a.dig(&["api-q.query.dc9.consul", "A"]);
    assert!(other_dc.contains("status: NXDOMAIN"), "{other_dc}");

    // A failing check drops its instance from the answer.
    register(&a, "api-b", "127.0.190.22", "api2", "api", &[], "critical");
    let dropped = eventually(Duration::from_secs(5), || {
        dig_short(&a, "api-q.query.consul", "A") == ["127.0.190.21"]
    });
    assert!(dropped, "{:?}", dig_short(&a, "api-q.query.consul", "A"));
    assert_eq!(
        dig_short(&a, "api-q.query.consul", "SRV"),
        ["1 1 8080 api-a.node.dc1.consul."]
    );
    register(&a, "api-a", "127.0.190.21", "api1", "api", &[], "critical");
    let gone = eventually(Duration::from_secs(5), || {
        a.dig(&["api-q.query.consul", "A"])
            .contains("status: NXDOMAIN")
    });
    assert!(gone, "no instance left is NXDOMAIN");
}

const ROOT: &str = "5f3a1c9e7b2d40e8a6c4b2d0f1e3a5c7";

/// ACLs as Consul's: `query:write` to create under a name, `query:read` to
/// see it, the stored token shown only to management and used to execute;
/// a client agent forwards every call to a server and answers the query
/// over DNS from its view.
#[test]
fn acls_stored_tokens_and_client_agents() {
    use common::acl::{acl_conf, add_config, req, token_with, wait_acl_ready};
    use common::cluster::Node;
    let mut server = Node::server(189, 30, 1, &[], &[]);
    add_config(
        &mut server,
        "acl.json",
        &acl_conf("deny", json!({"initial_management": ROOT})),
    );
    server.spawn();
    wait_acl_ready(&server);
    let (_, writer) = token_with(
        &server,
        ROOT,
        "team-writer",
        r#"query_prefix "team-" { policy = "write" }"#,
    );
    let (_, reader) = token_with(
        &server,
        ROOT,
        "team-reader",
        r#"query_prefix "team-" { policy = "read" }"#,
    );
    let (_, api_reader) = token_with(
        &server,
        ROOT,
        "api-reader",
        r#"service "api" { policy = "read" } node_prefix "" { policy = "read" }"#,
    );
    for (node, addr) in [("api-a", "127.0.189.41"), ("api-b", "127.0.189.42")] {
        let body = json!({"Node": node, "Address": addr,
                          "Service": {"ID": "api", "Service": "api", "Port": 9090}});
        let r = req(
            &server,
            "PUT",
            "/v1/catalog/register",
            Some(&body.to_string()),
            Some(ROOT),
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }

    let stored = json!({"Name": "team-api", "Token": api_reader, "Service": {"Service": "api"}});
    let r = req(
        &server,
        "POST",
        "/v1/query",
        Some(&stored.to_string()),
        Some(&writer),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["ID"].as_str().unwrap().to_string();
    let open = json!({"Name": "team-open", "Service": {"Service": "api"}});
    let r = req(
        &server,
        "POST",
        "/v1/query",
        Some(&open.to_string()),
        Some(&writer),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let other = json!({"Name": "other", "Service": {"Service": "api"}});
    let r = req(
        &server,
        "POST",
        "/v1/query",
        Some(&other.to_string()),
        Some(&writer),
    );
    assert_eq!((r.status, r.body.as_str()), (403, "Permission denied"));
    let r = req(
        &server,
        "DELETE",
        &format!("/v1/query/{id}"),
        None,
        Some(&reader),
    );
    assert_eq!((r.status, r.body.as_str()), (403, "Permission denied"));

    // The stored token is the management token's to see.
    let seen = req(
        &server,
        "GET",
        &format!("/v1/query/{id}"),
        None,
        Some(&reader),
    )
    .json();
    assert_eq!(seen[0]["Token"], "<hidden>");
    let seen = req(&server, "GET", &format!("/v1/query/{id}"), None, Some(ROOT)).json();
    assert_eq!(seen[0]["Token"], api_reader);
    let r = req(&server, "GET", &format!("/v1/query/{id}"), None, None);
    assert_eq!((r.status, r.body.as_str()), (403, "Permission denied"));
    let listed = req(&server, "GET", "/v1/query", None, None).json();
    assert_eq!(listed, json!([]), "anonymous sees no query");
    assert_eq!(
        req(&server, "GET", "/v1/query", None, Some(&reader))
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // Executing needs no query rule; the stored token reads the instances.
    let count = |node: &Node, q: &str, token: Option<&str>| -> usize {
        let r = req(node, "GET", &format!("/v1/query/{q}/execute"), None, token);
        assert_eq!(r.status, 200, "{q}: {}", r.body);
        r.json()["Nodes"].as_array().unwrap().len()
    };
    assert_eq!(count(&server, "team-api", None), 2);
    assert_eq!(
        count(&server, "team-open", None),
        0,
        "the caller's token reads nothing"
    );
    assert_eq!(count(&server, "team-open", Some(ROOT)), 2);

    // A client agent: calls go to the server; DNS answers from its view.
    let mut client = Node::client(189, 31, &[30], &[]);
    add_config(
        &mut client,
        "acl.json",
        &acl_conf("deny", json!({"default": api_reader})),
    );
    client.spawn();
    let forwarded = eventually(Duration::from_secs(30), || {
        common::acl::call(&client, "GET", "/v1/query/team-api/execute", None, None)
            .is_some_and(|r| r.status == 200 && r.body.contains("api-a"))
    });
    assert!(forwarded, "client execute; log:\n{}", client.log_text());
    let r = req(
        &client,
        "POST",
        "/v1/query",
        Some(&json!({"Name": "team-x", "Service": {"Service": "api"}}).to_string()),
        Some(&writer),
    );
    assert_eq!(r.status, 200, "create through the client: {}", r.body);
    let answered = eventually(Duration::from_secs(15), || {
        // A local read resolves the client's default token (the one DNS
        // answers under) through the server, refreshing what DNS uses.
        common::acl::call(&client, "GET", "/v1/catalog/services", None, None);
        let mut ips: Vec<String> = client
            .dig(&["team-api.query.consul", "A", "+short"])
            .lines()
            .map(str::to_string)
            .collect();
        ips.sort();
        ips == ["127.0.189.41", "127.0.189.42"]
    });
    assert!(
        answered,
        "client DNS: {}\nservice: {}\nlog:\n{}",
        client.dig(&["team-api.query.consul", "A"]),
        client.dig(&["api.service.consul", "A", "+short"]),
        client.log_text()
    );
}

/// A snapshot carries the prepared queries: restoring one brings back a
/// query deleted since, and its template still resolves.
#[test]
fn snapshots_carry_prepared_queries() {
    let a = TestAgent::dev_at("127.0.189.3", &[]);
    register(&a, "n1", "127.0.189.51", "db1", "db", &[], "passing");
    let id = create(
        &a,
        json!({"Name": "db-", "Template": {"Type": "name_prefix_match"},
               "Service": {"Service": "${name.suffix}"}}),
    );
    let saved = a.get_ok("/v1/snapshot");
    assert_eq!(saved.status, 200, "{}", saved.body);
    assert_eq!(a.delete(&format!("/v1/query/{id}")).status, 200);
    assert_eq!(a.get_ok("/v1/query/db-db/execute").status, 404);

    let r = a
        .request("PUT", "/v1/snapshot", Some(&saved.bytes), &[])
        .expect("restore");
    assert_eq!(r.status, 200, "restore: {}", r.body);
    let back = a.get_ok(&format!("/v1/query/{id}"));
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(back.json()[0]["Name"], "db-");
    assert_eq!(executed_nodes(&a, "db-db"), ["n1"]);
}
