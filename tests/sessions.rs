//! Sessions and locks against the real binary: the session endpoints' JSON
//! and errors, KV acquire/release with LockIndex and lock-delay, the txn
//! lock verbs, `cairn lock` mutual exclusion, and invalidation of a dead
//! holder's session (node failure in a cluster, TTL expiry).

mod common;

use common::cluster::{wait_leader, Node};
use common::{eventually, TestAgent, BIN};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn create(a: &TestAgent, body: &str) -> String {
    let r = a.put("/v1/session/create", body);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["ID"].as_str().expect("ID").to_string()
}

fn kv_entry(a: &TestAgent, key: &str) -> Value {
    let r = a.get_ok(&format!("/v1/kv/{key}"));
    assert_eq!(r.status, 200, "{key}: {}", r.body);
    r.json()[0].clone()
}

#[test]
fn session_lifecycle_json_and_errors() {
    let a = TestAgent::dev();
    let id = create(
        &a,
        r#"{"Name":"web-lock","TTL":"20s","LockDelay":5,"Behavior":"delete"}"#,
    );
    assert_eq!(id.len(), 36, "a UUID");

    let r = a.get_ok(&format!("/v1/session/info/{id}"));
    assert_eq!(r.status, 200);
    assert!(r.index() > 0);
    assert_eq!(r.header("X-Consul-KnownLeader"), Some("true"));
    assert!(r.header("X-Consul-LastContact").is_some());
    let info = r.json();
    let s = &info[0];
    let index = s["CreateIndex"].as_u64().unwrap();
    assert_eq!(
        *s,
        json!({
            "ID": id,
            "Name": "web-lock",
            "Node": "node1",
            "LockDelay": 5_000_000_000u64,
            "Behavior": "delete",
            "TTL": "20s",
            "NodeChecks": ["serfHealth"],
            "ServiceChecks": null,
            "CreateIndex": index,
            "ModifyIndex": index,
        })
    );

    // Defaults: this node, serfHealth, 15 s lock-delay, release, no TTL.
    let plain = create(&a, "");
    let s = &a.get_ok(&format!("/v1/session/info/{plain}")).json()[0];
    assert_eq!(s["LockDelay"], 15_000_000_000u64);
    assert_eq!(s["Behavior"], "release");
    assert_eq!(s["TTL"], "");
    // Naming the checks replaces the serfHealth default.
    let bare = create(&a, r#"{"Checks":[],"LockDelay":"2s"}"#);
    let s = &a.get_ok(&format!("/v1/session/info/{bare}")).json()[0];
    assert_eq!(s["NodeChecks"], Value::Null);
    assert_eq!(s["LockDelay"], 2_000_000_000u64);

    let list = a.get_ok("/v1/session/list").json();
    assert_eq!(list.as_array().unwrap().len(), 3);
    let node = a.get_ok("/v1/session/node/node1").json();
    assert_eq!(node.as_array().unwrap().len(), 3);
    assert_eq!(a.get_ok("/v1/session/node/ghost").body.trim(), "[]");

    let renewed = a.put(&format!("/v1/session/renew/{id}"), "");
    assert_eq!(renewed.status, 200);
    assert_eq!(renewed.json()[0]["ID"], id.as_str());

    // Consul's validation texts and codes.
    for (body, status, text) in [
        (
            r#"{"TTL":"5s"}"#,
            500,
            "Invalid Session TTL '5000000000', must be between [10s=24h0m0s]",
        ),
        (
            r#"{"TTL":"soon"}"#,
            500,
            "Session TTL 'soon' invalid: time: invalid duration \"soon\"",
        ),
        (
            r#"{"Behavior":"keep"}"#,
            500,
            "Invalid Behavior setting 'keep'",
        ),
        (r#"{"Node":"ghost"}"#, 500, "Missing node registration"),
        (
            r#"{"Checks":["nope"]}"#,
            500,
            "Missing check 'nope' registration",
        ),
        (
            r#"{"Bogus":1}"#,
            400,
            "Request decode failed: json: unknown field \"Bogus\"",
        ),
    ] {
        let r = a.put("/v1/session/create", body);
        assert_eq!((r.status, r.body.trim()), (status, text), "{body}");
    }
    let r = a.put("/v1/session/renew/no-such-session", "");
    assert_eq!(
        (r.status, r.body.as_str()),
        (404, "Session id 'no-such-session' not found")
    );
    assert_eq!(a.get_ok("/v1/session/info/").status, 400);
    assert_eq!(a.get_ok("/v1/session/create").status, 405);

    // Destroy: `true`, then gone; destroying again is still `true`.
    for _ in 0..2 {
        let r = a.put(&format!("/v1/session/destroy/{id}"), "");
        assert_eq!((r.status, r.body.trim()), (200, "true"));
    }
    let r = a.get_ok(&format!("/v1/session/info/{id}"));
    assert_eq!(r.body.trim(), "[]");
}

#[test]
fn session_list_blocks_until_a_session_changes() {
    let a = TestAgent::dev();
    let index = a.get_ok("/v1/session/list").index();
    let base = a.base();
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let r = reqwest::blocking::get(format!("{base}/v1/session/list?index={index}&wait=10s"))
            .expect("GET");
        let idx: u64 = r.headers()["X-Consul-Index"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        (started.elapsed(), idx, r.text().unwrap())
    });
    std::thread::sleep(Duration::from_millis(300));
    a.put("/v1/kv/unrelated", "x");
    std::thread::sleep(Duration::from_millis(300));
    let id = create(&a, "");
    let (took, idx, body) = waiter.join().unwrap();
    assert!(
        took < Duration::from_secs(5),
        "returned on the create ({took:?})"
    );
    assert!(idx > index);
    assert!(body.contains(&id));
}

#[test]
fn kv_acquire_release_lock_index_and_lock_delay() {
    let a = TestAgent::dev();
    let s1 = create(&a, r#"{"LockDelay":"1s"}"#);
    let s2 = create(&a, "");

    assert_eq!(
        a.put(&format!("/v1/kv/lead?acquire={s1}"), "one")
            .body
            .trim(),
        "true"
    );
    let e = kv_entry(&a, "lead");
    assert_eq!(
        (e["LockIndex"].as_u64(), e["Session"].as_str()),
        (Some(1), Some(s1.as_str()))
    );

    // The holder may re-acquire: the value changes, the LockIndex does not.
    assert_eq!(
        a.put(&format!("/v1/kv/lead?acquire={s1}"), "two")
            .body
            .trim(),
        "true"
    );
    let e = kv_entry(&a, "lead");
    assert_eq!(
        (e["LockIndex"].as_u64(), e["Value"].as_str()),
        (Some(1), Some("dHdv"))
    );

    // Others can neither take nor release it.
    assert_eq!(
        a.put(&format!("/v1/kv/lead?acquire={s2}"), "x").body.trim(),
        "false"
    );
    assert_eq!(
        a.put(&format!("/v1/kv/lead?release={s2}"), "x").body.trim(),
        "false"
    );

    let r = a.put(
        "/v1/kv/lead?acquire=00000000-0000-0000-0000-000000000000",
        "x",
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            500,
            "invalid session \"00000000-0000-0000-0000-000000000000\""
        )
    );
    let r = a.put(&format!("/v1/kv/lead?acquire={s1}&cas=0"), "x");
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("Conflicting flags: "), "{}", r.body);

    // A normal release: no lock-delay, the other session acquires at once.
    assert_eq!(
        a.put(&format!("/v1/kv/lead?release={s1}"), "").body.trim(),
        "true"
    );
    assert!(kv_entry(&a, "lead").get("Session").is_none());
    assert_eq!(
        a.put(&format!("/v1/kv/lead?acquire={s2}"), "b").body.trim(),
        "true"
    );
    assert_eq!(kv_entry(&a, "lead")["LockIndex"], 2);
    assert_eq!(
        a.put(&format!("/v1/kv/lead?release={s2}"), "").body.trim(),
        "true"
    );

    // Invalidation (destroy) releases the key and starts s1's 1 s lock-delay.
    assert_eq!(
        a.put(&format!("/v1/kv/lead?acquire={s1}"), "c").body.trim(),
        "true"
    );
    a.put(&format!("/v1/session/destroy/{s1}"), "");
    let released_at = Instant::now();
    assert!(kv_entry(&a, "lead").get("Session").is_none(), "released");
    assert_eq!(
        a.put(&format!("/v1/kv/lead?acquire={s2}"), "d").body.trim(),
        "false",
        "in lock-delay"
    );
    let r = a.put(
        "/v1/txn",
        &json!([{"KV": {"Verb": "lock", "Key": "lead", "Session": s2}}]).to_string(),
    );
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["Errors"][0]["What"],
        "failed to lock key \"lead\" due to lock delay"
    );
    assert!(eventually(Duration::from_secs(3), || a
        .put(&format!("/v1/kv/lead?acquire={s2}"), "d")
        .body
        .trim()
        == "true"));
    assert!(
        released_at.elapsed() >= Duration::from_millis(900),
        "waited out the delay"
    );

    // Behavior delete removes held keys on invalidation.
    let s3 = create(&a, r#"{"Behavior":"delete","LockDelay":"0s"}"#);
    assert_eq!(
        a.put(&format!("/v1/kv/eph?acquire={s3}"), "v").body.trim(),
        "true"
    );
    a.put(&format!("/v1/session/destroy/{s3}"), "");
    assert_eq!(a.get_ok("/v1/kv/eph").status, 404);
}

#[test]
fn txn_lock_unlock_and_check_session() {
    let a = TestAgent::dev();
    let s1 = create(&a, "");
    let s2 = create(&a, "");
    let r = a.put(
        "/v1/txn",
        &json!([
            {"KV": {"Verb": "lock", "Key": "t", "Value": "aGk=", "Session": s1}},
            {"KV": {"Verb": "check-session", "Key": "t", "Session": s1}},
        ])
        .to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let res = r.json();
    assert_eq!(res["Results"][0]["KV"]["Session"], s1.as_str());
    assert_eq!(res["Results"][0]["KV"]["LockIndex"], 1);
    assert_eq!(res["Results"][0]["KV"]["Value"], Value::Null);

    let r = a.put(
        "/v1/txn",
        &json!([
            {"KV": {"Verb": "lock", "Key": "t", "Session": s2}},
            {"KV": {"Verb": "unlock", "Key": "t", "Session": s2}},
            {"KV": {"Verb": "check-session", "Key": "t", "Session": s2}},
            {"KV": {"Verb": "lock", "Key": "u", "Session": "ghost"}},
        ])
        .to_string(),
    );
    assert_eq!(r.status, 409);
    let what: Vec<String> = r.json()["Errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["What"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        what,
        vec![
            "failed to lock key \"t\", lock is already held".to_string(),
            "failed to unlock key \"t\", lock isn't held, or is held by another session".into(),
            format!("failed session check for key \"t\", current session \"{s1}\" != \"{s2}\""),
            "invalid session \"ghost\"".into(),
        ]
    );
    let r = a.put(
        "/v1/txn",
        &json!([{"KV": {"Verb": "unlock", "Key": "t", "Session": s1}}]).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(kv_entry(&a, "t").get("Session").is_none());
}

/// Two `cairn lock` loops incrementing a counter file under the same lock:
/// the critical sections never interleave and no increment is lost.
#[test]
fn cairn_lock_contenders_never_hold_the_lock_at_once() {
    let a = TestAgent::dev();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let counter = dir.path().join("counter");
    std::fs::write(&counter, "0").unwrap();
    // Read, pause, write back: an overlap would lose an increment.
    let child = format!(
        "echo start $$ >> {log}; n=$(cat {c}); sleep 0.05; echo $((n+1)) > {c}; echo end $$ >> {log}",
        log = log.display(),
        c = counter.display()
    );
    let rounds = 6;
    let contenders: Vec<_> = (0..2)
        .map(|_| {
            let child = child.clone();
            let addr = format!("127.0.0.1:{}", a.ports.http);
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    let st = std::process::Command::new(BIN)
                        .args([
                            "lock",
                            &format!("-http-addr={addr}"),
                            "jobs/counter",
                            &child,
                        ])
                        .status()
                        .expect("cairn lock");
                    assert!(st.success(), "cairn lock exited with {st}");
                }
            })
        })
        .collect();
    for c in contenders {
        c.join().unwrap();
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2 * 2 * rounds, "{text}");
    for pair in lines.chunks(2) {
        let start = pair[0].strip_prefix("start ").expect(&text);
        let end = pair[1].strip_prefix("end ").expect(&text);
        assert_eq!(start, end, "critical sections interleaved:\n{text}");
    }
    assert_eq!(
        std::fs::read_to_string(&counter).unwrap().trim(),
        (2 * rounds).to_string()
    );
    // The lock is free and its sessions are gone.
    let lock = kv_entry(&a, "jobs/counter/.lock");
    assert!(lock.get("Session").is_none());
    assert_eq!(lock["LockIndex"], 2 * rounds);
    assert_eq!(a.get_ok("/v1/session/list").body.trim(), "[]");
}

#[test]
fn cairn_lock_passes_the_exit_code_and_runs_only_when_held() {
    let a = TestAgent::dev();
    let addr = format!("-http-addr=127.0.0.1:{}", a.ports.http);
    let st = std::process::Command::new(BIN)
        .args(["lock", &addr, "svc", "exit 3"])
        .status()
        .unwrap();
    assert_eq!(st.code(), Some(3));
    // Hold the lock from another session: a -timeout'd contender gives up.
    let holder = create(&a, "");
    assert_eq!(
        a.put(&format!("/v1/kv/svc/.lock?acquire={holder}"), "")
            .body
            .trim(),
        "true"
    );
    let out = std::process::Command::new(BIN)
        .args(["lock", &addr, "-timeout=1s", "svc", "echo ran"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("ran"));
}

#[test]
fn unrenewed_ttl_session_is_invalidated_and_a_renewed_one_lives() {
    let a = TestAgent::dev();
    let lapsing = create(&a, r#"{"TTL":"10s","Checks":[],"LockDelay":"0s"}"#);
    let renewed = create(&a, r#"{"TTL":"10s","Checks":[]}"#);
    assert_eq!(
        a.put(&format!("/v1/kv/ttl-lock?acquire={lapsing}"), "x")
            .body
            .trim(),
        "true"
    );
    let started = Instant::now();
    let gone = eventually(Duration::from_secs(30), || {
        a.put(&format!("/v1/session/renew/{renewed}"), "");
        a.get_ok(&format!("/v1/session/info/{lapsing}")).body.trim() == "[]"
    });
    let took = started.elapsed();
    assert!(gone, "the unrenewed session lapsed");
    // Consul invalidates after the TTL and at most twice it.
    assert!(
        took >= Duration::from_secs(9),
        "not before its TTL ({took:?})"
    );
    assert!(
        kv_entry(&a, "ttl-lock").get("Session").is_none(),
        "its lock was released"
    );
    assert_eq!(
        a.get_ok(&format!("/v1/session/info/{renewed}")).json()[0]["ID"],
        renewed.as_str()
    );
}

/// A lock held through a session on a client agent is freed when that
/// agent dies: gossip marks it failed, the leader sets its serfHealth
/// critical, and that apply invalidates the session.
#[test]
fn killed_holders_lock_is_released_by_session_invalidation() {
    let net = 31;
    let mut s1 = Node::server(net, 1, 1, &[], &[]);
    s1.spawn();
    wait_leader(&[&s1], Duration::from_secs(15)).expect("leader");
    let mut c2 = Node::client(net, 2, &[1], &[]);
    c2.spawn();
    // The client's node must be in the catalog before it can own a session.
    let mut session = String::new();
    assert!(eventually(Duration::from_secs(20), || {
        match c2.put("/v1/session/create", "") {
            Ok(r) if r.status == 200 => {
                session = r.json()["ID"].as_str().unwrap_or_default().to_string();
                true
            }
            _ => false,
        }
    }));
    let r = c2
        .put(&format!("/v1/kv/leader?acquire={session}"), "c2")
        .unwrap();
    assert_eq!(r.body.trim(), "true");
    let holder = |n: &Node| {
        n.get("/v1/kv/leader")
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| r.json()[0]["Session"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(holder(&s1).as_deref(), Some(session.as_str()));
    let info = s1
        .get(&format!("/v1/session/info/{session}"))
        .unwrap()
        .json();
    assert_eq!(info[0]["Node"], "c2");

    c2.kill9();
    assert!(
        eventually(Duration::from_secs(30), || holder(&s1).as_deref()
            == Some("")),
        "the dead holder's lock is released"
    );
    assert_eq!(
        s1.get(&format!("/v1/session/info/{session}"))
            .unwrap()
            .body
            .trim(),
        "[]"
    );
    // Another session takes it once the 15 s lock-delay has passed.
    let other = s1.put("/v1/session/create", "").unwrap().json()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(eventually(Duration::from_secs(20), || s1
        .put(&format!("/v1/kv/leader?acquire={other}"), "s1")
        .is_ok_and(|r| r.body.trim() == "true")));
}
