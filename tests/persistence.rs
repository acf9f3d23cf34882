//! Durability: every write acknowledged before a SIGKILL is there after a
//! restart on the same data dir, and the node keeps its identity.

mod common;

use common::{eventually, TestAgent};
use std::time::Duration;

#[test]
fn acknowledged_kv_writes_survive_sigkill() {
    let mut agent = TestAgent::dev();
    for i in 0..50 {
        let r = agent.put(&format!("/v1/kv/crash/key{i}"), &format!("value-{i}"));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body.trim(), "true");
    }
    let before = agent.get_ok("/v1/kv/crash/key49");
    let index_before: u64 = before.header("x-consul-index").unwrap().parse().unwrap();
    // The last write was acknowledged; kill at once, with no chance to flush.
    agent.kill9();
    agent.start();
    for i in 0..50 {
        let r = agent.get_ok(&format!("/v1/kv/crash/key{i}?raw"));
        assert_eq!(r.status, 200, "key{i} lost after SIGKILL");
        assert_eq!(r.body, format!("value-{i}"));
    }
    // Indexes continue from where they were; they never go backwards.
    let r = agent.put("/v1/kv/crash/after", "x");
    assert_eq!(r.status, 200);
    let after = agent.get_ok("/v1/kv/crash/after");
    let index_after: u64 = after.header("x-consul-index").unwrap().parse().unwrap();
    assert!(
        index_after > index_before,
        "index went from {index_before} to {index_after}"
    );
}

#[test]
fn agent_services_and_node_id_survive_sigkill() {
    let mut agent = TestAgent::dev();
    let r = agent.put(
        "/v1/agent/service/register",
        r#"{"Name":"web","ID":"web1","Port":8080,"Tags":["v1"],"Check":{"TTL":"30s","Status":"passing"}}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let self1 = agent.get_ok("/v1/agent/self").json();
    let node_id = self1["Config"]["NodeID"].as_str().unwrap().to_string();
    assert_eq!(node_id.len(), 36, "node ID is a UUID: {node_id}");

    agent.kill9();
    agent.start();

    let self2 = agent.get_ok("/v1/agent/self").json();
    assert_eq!(
        self2["Config"]["NodeID"].as_str().unwrap(),
        node_id,
        "node ID is stable across restarts"
    );
    let services = agent.get_ok("/v1/agent/services").json();
    assert_eq!(services["web1"]["Service"], "web");
    assert_eq!(services["web1"]["Port"], 8080);
    let checks = agent.get_ok("/v1/agent/checks").json();
    assert_eq!(checks["service:web1"]["Status"], "passing");
    let catalog = agent.get_ok("/v1/catalog/service/web").json();
    assert_eq!(catalog.as_array().unwrap().len(), 1);
    assert_eq!(catalog[0]["ServiceID"], "web1");
    assert!(
        eventually(Duration::from_secs(5), || agent
            .dig(&["+short", "web.service.consul", "SRV"])
            .contains("8080")),
        "service answers in DNS after restart"
    );
}

#[test]
fn graceful_sigterm_exits_zero_and_keeps_data() {
    let mut agent = TestAgent::dev();
    assert_eq!(agent.put("/v1/kv/g", "1").status, 200);
    assert_eq!(agent.terminate(), Some(0));
    agent.start();
    assert_eq!(agent.get_ok("/v1/kv/g?raw").body, "1");
}
