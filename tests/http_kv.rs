//! The KV store and transactions over real sockets, as Consul clients use them.

mod common;

use common::TestAgent;
use serde_json::json;
use std::time::{Duration, Instant};

#[test]
fn put_then_get_roundtrip_with_index_and_raw() {
    let a = TestAgent::dev();
    let r = a.put("/v1/kv/app/config?flags=42", "hello");
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!(true));

    let r = a.get_ok("/v1/kv/app/config");
    assert_eq!(r.status, 200);
    let e = &r.json()[0];
    assert_eq!(e["Key"], "app/config");
    assert_eq!(e["Value"], "aGVsbG8=");
    assert_eq!(e["Flags"], 42);
    assert_eq!(e["LockIndex"], 0);
    assert_eq!(r.index(), e["ModifyIndex"].as_u64().unwrap());

    let raw = a.get_ok("/v1/kv/app/config?raw");
    assert_eq!(raw.body, "hello");
    assert_eq!(raw.header("Content-Type"), Some("text/plain"));
    assert_eq!(raw.header("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(raw.header("Content-Security-Policy"), Some("sandbox"));

    // An update moves ModifyIndex but not CreateIndex.
    a.put("/v1/kv/app/config", "again");
    let e2 = a.get_ok("/v1/kv/app/config").json()[0].clone();
    assert_eq!(e2["CreateIndex"], e["CreateIndex"]);
    assert!(e2["ModifyIndex"].as_u64() > e["ModifyIndex"].as_u64());
    assert_eq!(e2["Flags"], 0);
}

#[test]
fn missing_key_is_404_with_index() {
    let a = TestAgent::dev();
    let r = a.get_ok("/v1/kv/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.body, "");
    assert!(r.index() >= 1);
    assert_eq!(r.header("X-Consul-KnownLeader"), Some("true"));
    let r = a.get_ok("/v1/kv/");
    assert_eq!((r.status, r.body.as_str()), (400, "Missing key name"));
    let r = a.put("/v1/kv/", "x");
    assert_eq!((r.status, r.body.as_str()), (400, "Missing key name"));
}

#[test]
fn empty_value_is_null() {
    let a = TestAgent::dev();
    a.put("/v1/kv/empty", "");
    assert_eq!(a.get_ok("/v1/kv/empty").json()[0]["Value"], json!(null));
    let raw = a.get_ok("/v1/kv/empty?raw");
    assert_eq!((raw.status, raw.body.as_str()), (200, ""));
}

#[test]
fn cas_creates_only_once_and_checks_index() {
    let a = TestAgent::dev();
    assert_eq!(a.put("/v1/kv/lock?cas=0", "a").json(), json!(true));
    assert_eq!(a.put("/v1/kv/lock?cas=0", "b").json(), json!(false));
    let idx = a.get_ok("/v1/kv/lock").json()[0]["ModifyIndex"]
        .as_u64()
        .unwrap();
    assert_eq!(
        a.put(&format!("/v1/kv/lock?cas={}", idx + 100), "c").json(),
        json!(false)
    );
    assert_eq!(
        a.put(&format!("/v1/kv/lock?cas={idx}"), "d").json(),
        json!(true)
    );
    assert_eq!(a.get_ok("/v1/kv/lock?raw").body, "d");

    let idx = a.get_ok("/v1/kv/lock").json()[0]["ModifyIndex"]
        .as_u64()
        .unwrap();
    assert_eq!(
        a.delete(&format!("/v1/kv/lock?cas={}", idx + 1)).json(),
        json!(false)
    );
    assert_eq!(a.get_ok("/v1/kv/lock").status, 200);
    assert_eq!(
        a.delete(&format!("/v1/kv/lock?cas={idx}")).json(),
        json!(true)
    );
    assert_eq!(a.get_ok("/v1/kv/lock").status, 404);
}

#[test]
fn recurse_keys_and_separator() {
    let a = TestAgent::dev();
    for k in ["web/a", "web/b/c", "web/b/d", "other"] {
        a.put(&format!("/v1/kv/{k}"), k);
    }
    let r = a.get_ok("/v1/kv/web/?recurse");
    let body = r.json();
    let keys: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["web/a", "web/b/c", "web/b/d"]);
    let max = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["ModifyIndex"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(r.index(), max);

    assert_eq!(
        a.get_ok("/v1/kv/web/?keys").json(),
        json!(["web/a", "web/b/c", "web/b/d"])
    );
    assert_eq!(
        a.get_ok("/v1/kv/web/?keys&separator=/").json(),
        json!(["web/a", "web/b/"])
    );
    assert_eq!(
        a.get_ok("/v1/kv/?keys&separator=/").json(),
        json!(["other", "web/"])
    );
    assert_eq!(
        a.get_ok("/v1/kv/?recurse").json().as_array().unwrap().len(),
        4
    );
    assert_eq!(a.get_ok("/v1/kv/none/?keys").status, 404);
    assert_eq!(a.get_ok("/v1/kv/none/?recurse").status, 404);

    assert_eq!(a.delete("/v1/kv/web/b?recurse").json(), json!(true));
    assert_eq!(a.get_ok("/v1/kv/web/?keys").json(), json!(["web/a"]));
    assert_eq!(a.delete("/v1/kv/other").json(), json!(true));
    assert_eq!(a.get_ok("/v1/kv/other").status, 404);
}

#[test]
fn keys_may_hold_unusual_characters() {
    let a = TestAgent::dev();
    for (path, key) in [
        ("config%2Fapp.json", "config/app.json"),
        ("with%20space", "with space"),
        ("a..b", "a..b"),
    ] {
        let r = a.put(&format!("/v1/kv/{path}"), "v");
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let got = a.get_ok(&format!("/v1/kv/{path}")).json();
        assert_eq!(got[0]["Key"], key);
    }
    let r = a.put("/v1/kv/a/%2e%2e%2fsecret", "v");
    assert_eq!(r.status, 400);
}

#[test]
fn values_over_the_limit_are_413() {
    let a = TestAgent::dev();
    let big = "x".repeat(512 * 1024 + 1);
    let r = a.put("/v1/kv/big", &big);
    assert_eq!(r.status, 413);
    assert!(
        r.body
            .starts_with("Request body(524289 bytes) too large, max size: 524288 bytes."),
        "{}",
        r.body
    );
    assert_eq!(a.get_ok("/v1/kv/big").status, 404);
    let exact = "x".repeat(512 * 1024);
    assert_eq!(a.put("/v1/kv/big", &exact).status, 200);
}

#[test]
fn conflicting_and_bad_parameters() {
    let a = TestAgent::dev();
    let r = a.put("/v1/kv/k?cas=0&acquire=abc", "v");
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("Conflicting flags: "), "{}", r.body);
    let r = a.delete("/v1/kv/k?recurse&cas=1");
    assert_eq!(r.status, 400);
    let r = a.put("/v1/kv/k?flags=abc", "v");
    assert_eq!(r.status, 500);
    assert!(r.body.contains("invalid syntax"), "{}", r.body);
    assert_eq!(a.get_ok("/v1/kv/k").status, 404);
}

#[test]
fn blocking_get_returns_when_the_key_changes() {
    let a = TestAgent::dev();
    a.put("/v1/kv/watched", "1");
    let idx = a.get_ok("/v1/kv/watched").index();
    // A change to another key does not end the wait on this one.
    let base = a.base();
    let writer = std::thread::spawn(move || {
        let c = reqwest::blocking::Client::new();
        std::thread::sleep(Duration::from_millis(200));
        c.put(format!("{base}/v1/kv/unrelated"))
            .body("x")
            .send()
            .unwrap();
        std::thread::sleep(Duration::from_millis(400));
        c.put(format!("{base}/v1/kv/watched"))
            .body("2")
            .send()
            .unwrap();
    });
    let t = Instant::now();
    let r = a.get_ok(&format!("/v1/kv/watched?index={idx}&wait=10s"));
    writer.join().unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert!(r.index() > idx);
    assert_eq!(r.json()[0]["Value"], "Mg==");
}

#[test]
fn txn_applies_all_or_nothing() {
    let a = TestAgent::dev();
    let ops = json!([
        {"KV": {"Verb": "set", "Key": "t/a", "Value": "YQ=="}},
        {"KV": {"Verb": "set", "Key": "t/b", "Value": "Yg==", "Flags": 7}},
        {"KV": {"Verb": "get", "Key": "t/a"}}
    ]);
    let r = a.put("/v1/txn", &ops.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["Errors"], json!(null));
    let results = v["Results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["KV"]["Key"], "t/a");
    assert_eq!(results[0]["KV"]["Value"], json!(null));
    assert_eq!(results[1]["KV"]["Flags"], 7);
    assert_eq!(results[2]["KV"]["Value"], "YQ==");

    let ops = json!([
        {"KV": {"Verb": "set", "Key": "t/c", "Value": "Yw=="}},
        {"KV": {"Verb": "check-not-exists", "Key": "t/a"}}
    ]);
    let r = a.put("/v1/txn", &ops.to_string());
    assert_eq!(r.status, 409, "{}", r.body);
    let v = r.json();
    assert_eq!(v["Results"], json!(null));
    assert_eq!(v["Errors"][0]["OpIndex"], 1);
    assert!(v["Errors"][0]["What"].as_str().unwrap().contains("t/a"));
    assert_eq!(
        a.get_ok("/v1/kv/t/c").status,
        404,
        "a failed txn writes nothing"
    );
}

#[test]
fn txn_rejects_malformed_and_oversized_requests() {
    let a = TestAgent::dev();
    let r = a.put("/v1/txn", "{not json");
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("Failed to parse body"), "{}", r.body);
    let r = a.put("/v1/txn", r#"[{"KV":{"Verb":"set","Key":"k","Bogus":1}}]"#);
    assert_eq!(r.status, 400);
    let r = a.put(
        "/v1/txn",
        r#"[{"KV":{"Verb":"set","Key":"k","Value":"!!!"}}]"#,
    );
    assert_eq!(r.status, 400);
    let ops: Vec<_> = (0..129)
        .map(|i| json!({"KV": {"Verb": "get", "Key": format!("k{i}")}}))
        .collect();
    let r = a.put("/v1/txn", &serde_json::Value::Array(ops).to_string());
    assert_eq!(r.status, 413);
    assert_eq!(
        r.body,
        "Transaction contains too many operations (129 > 128)"
    );
    let r = a.put("/v1/txn", r#"[{"KV":{"Verb":"frobnicate","Key":"k"}}]"#);
    assert_eq!(r.status, 409);
    assert_eq!(a.get_ok("/v1/txn").status, 405);
}

#[test]
fn txn_runs_node_service_and_check_operations() {
    let a = TestAgent::dev();
    let txn = |ops: serde_json::Value| {
        let r = a.put("/v1/txn", &ops.to_string());
        (r.status, r.json())
    };
    // A node, its service and a check, with a KV write, in one transaction.
    let (status, v) = txn(json!([
        {"Node": {"Verb": "set", "Node": {"Node": "ext", "Address": "10.1.2.3", "Meta": {"rack": "r1"}}}},
        {"Service": {"Verb": "set", "Node": "ext", "Service": {"ID": "db1", "Service": "db", "Port": 5432, "Tags": ["primary"]}}},
        {"Check": {"Verb": "set", "Check": {"Node": "ext", "CheckID": "db1-alive", "Name": "alive", "Status": "passing", "ServiceID": "db1"}}},
        {"KV": {"Verb": "set", "Key": "ext/registered", "Value": "eWVz"}}
    ]));
    assert_eq!(status, 200, "{v}");
    let results = v["Results"].as_array().expect("results");
    assert_eq!(results.len(), 4, "{v}");
    assert_eq!(results[0]["Node"]["Node"], "ext");
    assert_eq!(results[0]["Node"]["Datacenter"], "dc1");
    assert_eq!(results[0]["Node"]["Meta"]["rack"], "r1");
    assert_eq!(results[1]["Service"]["ID"], "db1");
    assert_eq!(results[1]["Service"]["Port"], 5432);
    assert_eq!(results[2]["Check"]["Status"], "passing");
    assert_eq!(results[2]["Check"]["ServiceName"], "db");
    assert!(results[3]["KV"].is_object());
    let node_index = results[0]["Node"]["ModifyIndex"].as_u64().unwrap();

    // What the catalog, health and DNS now answer.
    let svc = a.get_ok("/v1/health/service/db?passing").json();
    assert_eq!(svc[0]["Node"]["Address"], "10.1.2.3", "{svc}");
    assert!(a
        .dig(&["+short", "db.service.consul", "A"])
        .contains("10.1.2.3"));

    // Gets, and CAS against the indexes.
    let (status, v) = txn(json!([
        {"Node": {"Verb": "get", "Node": {"Node": "ext"}}},
        {"Service": {"Verb": "get", "Node": "ext", "Service": {"ID": "db1"}}},
        {"Check": {"Verb": "get", "Check": {"Node": "ext", "CheckID": "db1-alive"}}},
        {"Node": {"Verb": "cas", "Node": {"Node": "ext", "Address": "10.1.2.4", "ModifyIndex": node_index}}}
    ]));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["Results"][0]["Node"]["Address"], "10.1.2.3");
    assert_eq!(v["Results"][1]["Service"]["Service"], "db");
    assert_eq!(v["Results"][2]["Check"]["Name"], "alive");
    assert_eq!(v["Results"][3]["Node"]["Address"], "10.1.2.4");

    // A stale CAS, a missing node and an unknown verb fail the whole
    // transaction with Consul's texts; the KV write with them is not made.
    let (status, v) = txn(json!([
        {"Node": {"Verb": "cas", "Node": {"Node": "ext", "Address": "10.9.9.9", "ModifyIndex": node_index}}},
        {"Service": {"Verb": "set", "Node": "nowhere", "Service": {"ID": "x", "Service": "x"}}},
        {"Check": {"Verb": "get", "Check": {"Node": "ext", "CheckID": "nope"}}},
        {"KV": {"Verb": "set", "Key": "ext/lost", "Value": "eA=="}}
    ]));
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["Results"], json!(null));
    let whats: Vec<(u64, String)> = v["Errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["OpIndex"].as_u64().unwrap(),
                e["What"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        whats,
        [
            (0, "failed to set node \"ext\", index is stale".to_string()),
            (1, "Missing node registration".to_string()),
            (
                2,
                "check \"nope\" on node \"ext\" doesn't exist".to_string()
            ),
        ]
    );
    assert_eq!(a.get_ok("/v1/kv/ext/lost").status, 404);
    assert_eq!(
        a.get_ok("/v1/catalog/node/ext").json()["Node"]["Address"],
        "10.1.2.4"
    );
    let (status, v) = txn(json!([{"Node": {"Verb": "frob", "Node": {"Node": "ext"}}}]));
    assert_eq!(status, 409);
    assert_eq!(v["Errors"][0]["What"], "unknown Node verb \"frob\"");

    // Deletes: the check, then the service with delete-cas, then the node.
    let svc_index = a.get_ok("/v1/catalog/service/db").json()[0]["ModifyIndex"]
        .as_u64()
        .unwrap();
    let (status, v) = txn(json!([
        {"Check": {"Verb": "delete", "Check": {"Node": "ext", "CheckID": "db1-alive"}}},
        {"Service": {"Verb": "delete-cas", "Node": "ext", "Service": {"ID": "db1", "ModifyIndex": svc_index}}}
    ]));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["Results"], json!([]));
    assert_eq!(a.get_ok("/v1/catalog/service/db").json(), json!([]));
    let (status, _) = txn(json!([{"Node": {"Verb": "delete", "Node": {"Node": "ext"}}}]));
    assert_eq!(status, 200);
    assert_eq!(a.get_ok("/v1/catalog/node/ext").json(), json!(null));
}
