//! The gossip keyring against the real binary: a full rotation on a live
//! encrypted cluster (two servers and a client agent) over
//! `/v1/operator/keyring` and `cairn keyring`, the keyring file surviving a
//! restart, an agent with another key kept out (and counted), Consul's
//! errors, and ACLs.

mod common;

use common::cluster::{wait_leader, Node};
use common::{eventually, http_request, Resp, TestAgent, BIN};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const K1: &str = "T5Jn7XkqTOF3ZdKJv6uDd2uQiePoNm8XhgH8y3Pq2Ns=";
const K2: &str = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
const K3: &str = "cg8StVXbQJ0gPvMd9o7yrg==";

/// `cairn <args>`: exit code, stdout, stderr.
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .output()
        .expect("run cairn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn keyring(n: &Node, method: &str, body: Option<&str>) -> Resp {
    n.request(method, "/v1/operator/keyring", body)
        .unwrap_or_else(|e| panic!("{method} keyring on {}: {e}", n.name))
}

fn key_body(key: &str) -> String {
    json!({ "Key": key }).to_string()
}

/// The LAN pool's `Keys` and `NumNodes` as `n` lists them.
fn listed(n: &Node) -> (BTreeMap<String, u64>, BTreeMap<String, u64>, u64) {
    let r = keyring(n, "GET", None);
    assert_eq!(r.status, 200, "list on {}: {}", n.name, r.body);
    let v = r.json();
    let pools = v.as_array().expect("an array of pools");
    // A server lists the WAN pool first, as Consul does; every agent lists
    // its datacenter's LAN pool.
    let server = n.args.iter().any(|a| a == "-server");
    assert_eq!(pools.len(), if server { 2 } else { 1 }, "{v}");
    if server {
        assert_eq!(pools[0]["WAN"], true, "{v}");
        assert_eq!(pools[0]["Datacenter"], "dc1", "{v}");
    }
    let pool = pools.last().expect("the LAN pool");
    assert_eq!(pool["WAN"], false);
    assert_eq!(pool["Datacenter"], "dc1");
    assert_eq!(pool["Segment"], "");
    let counts = |field: &str| -> BTreeMap<String, u64> {
        pool[field]
            .as_object()
            .unwrap_or_else(|| panic!("{field} in {v}"))
            .iter()
            .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
            .collect()
    };
    (
        counts("Keys"),
        counts("PrimaryKeys"),
        pool["NumNodes"].as_u64().unwrap_or(0),
    )
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

/// Name → serf status (1 alive) from `/v1/agent/members` at `ip`.
fn member_statuses(ip: &str) -> Option<BTreeMap<String, u64>> {
    let r = http_request(
        "GET",
        &format!("http://{ip}:8500/v1/agent/members"),
        None,
        &[],
    )
    .ok()?;
    let v: Value = serde_json::from_str(&r.body).ok()?;
    Some(
        v.as_array()?
            .iter()
            .map(|m| {
                (
                    m["Name"].as_str().unwrap_or("").to_string(),
                    m["Status"].as_u64().unwrap_or(0),
                )
            })
            .collect(),
    )
}

fn all_alive(nodes: &[&Node], names: &[&str]) -> bool {
    nodes.iter().all(|n| {
        member_statuses(&n.ip).is_some_and(|m| names.iter().all(|name| m.get(*name) == Some(&1)))
    })
}

/// Polls every node's member list until stopped; collects every sighting
/// of a member that is not alive.
struct MemberWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    polls: Arc<Mutex<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MemberWatch {
    fn start(ips: Vec<String>, names: Vec<String>) -> MemberWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let polls = Arc::new(Mutex::new(0));
        let (s, v, p) = (stop.clone(), seen.clone(), polls.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for ip in &ips {
                    let statuses = member_statuses(ip);
                    for name in &names {
                        let status = statuses.as_ref().and_then(|m| m.get(name).copied());
                        if status != Some(1) {
                            v.lock()
                                .unwrap()
                                .push(format!("{ip} sees {name}: {status:?}"));
                        }
                    }
                }
                *p.lock().unwrap() += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        MemberWatch {
            stop,
            seen,
            polls,
            thread: Some(thread),
        }
    }

    /// Stops polling; returns how many rounds ran and what was not alive.
    fn finish(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let polls = *self.polls.lock().unwrap();
        let seen = self.seen.lock().unwrap().clone();
        (polls, seen)
    }
}

fn keyring_file(n: &Node) -> Vec<String> {
    let path = n.data_dir.join("serf/local.keyring");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}: {text}"))
}

/// `cairn_gossip_packets_dropped{reason="decrypt"}` on `n`.
fn undecryptable(n: &Node) -> f64 {
    let text = n
        .get("/v1/agent/metrics?format=prometheus")
        .map(|r| r.body)
        .unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("cairn_gossip_packets_dropped{reason=\"decrypt\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn a_rotation_on_a_live_cluster_keeps_every_member_and_survives_a_restart() {
    let net = 150;
    let encrypt = format!("-encrypt={K1}");
    let mut s1 = Node::server(net, 1, 2, &[2], &[&encrypt]);
    let mut s2 = Node::server(net, 2, 2, &[1], &[&encrypt]);
    let mut c3 = Node::client(net, 3, &[1, 2], &[&encrypt]);
    for n in [&mut s1, &mut s2, &mut c3] {
        n.spawn();
    }
    wait_leader(&[&s1, &s2], Duration::from_secs(20)).expect("leader");
    let names = ["s1", "s2", "c3"];
    assert!(
        eventually(Duration::from_secs(20), || all_alive(
            &[&s1, &s2, &c3],
            &names
        )),
        "cluster never formed; c3 log:\n{}",
        c3.log_text()
    );
    // Every agent started its keyring file from -encrypt.
    for n in [&s1, &s2, &c3] {
        assert_eq!(keyring_file(n), vec![K1.to_string()], "{}", n.name);
    }
    let watch = MemberWatch::start(
        vec![s1.ip.clone(), s2.ip.clone(), c3.ip.clone()],
        names.iter().map(|s| s.to_string()).collect(),
    );

    // Install the new key through the CLI against the client agent.
    let c3_addr = format!("-http-addr={}:8500", c3.ip);
    let (code, out, err) = cli(&["keyring", &c3_addr, "-install", K2]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "==> Installing new gossip encryption key...\n");
    for n in [&s1, &s2, &c3] {
        let (keys, primary, nodes) = listed(n);
        assert_eq!(keys, counts(&[(K1, 3), (K2, 3)]), "on {}", n.name);
        assert_eq!(primary, counts(&[(K1, 3)]), "on {}", n.name);
        assert_eq!(nodes, 3);
        assert_eq!(keyring_file(n), vec![K1.to_string(), K2.to_string()]);
    }
    let (code, out, err) = cli(&["keyring", &c3_addr, "-list"]);
    assert_eq!(code, 0, "{out}{err}");
    // Keys print in order: K1 ("T5J...") sorts before K2 ("pUq...").
    assert_eq!(
        out,
        format!("==> Gathering installed encryption keys...\n\ndc1 (LAN):\n  {K1} [3/3]\n  {K2} [3/3]\n")
    );

    // Make it primary (asked of a server), then remove the old key.
    let r = keyring(&s2, "PUT", Some(&key_body(K2)));
    assert_eq!((r.status, r.body.as_str()), (200, ""), "{}", r.body);
    for n in [&s1, &s2, &c3] {
        let (_, primary, _) = listed(n);
        assert_eq!(primary, counts(&[(K2, 3)]), "on {}", n.name);
    }
    let (code, out, _) = cli(&["keyring", &c3_addr, "-list-primary"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("  {K2} [3/3]")), "{out}");
    assert!(!out.contains(K1), "{out}");

    // Removing the primary is refused by every member; nothing changes.
    let r = keyring(&s1, "DELETE", Some(&key_body(K2)));
    assert_eq!(r.status, 500);
    assert!(
        r.body.starts_with("7 errors occurred:\n\t* WAN error: 2/2 nodes reported failure\n\t* s1.dc1: Removing the primary key is not allowed\n\t* s2.dc1: Removing the primary key is not allowed\n\t* dc1 (LAN) error: 3/3 nodes reported failure\n\t* c3: Removing the primary key is not allowed\n\t* s1: Removing the primary key is not allowed\n\t* s2: Removing the primary key is not allowed"),
        "{:?}",
        r.body
    );
    let r = keyring(&s1, "DELETE", Some(&key_body(K1)));
    assert_eq!((r.status, r.body.as_str()), (200, ""), "{}", r.body);
    for n in [&s1, &s2, &c3] {
        let (keys, primary, nodes) = listed(n);
        assert_eq!(
            (keys, primary, nodes),
            (counts(&[(K2, 3)]), counts(&[(K2, 3)]), 3)
        );
        assert_eq!(keyring_file(n), vec![K2.to_string()], "{}", n.name);
    }

    // A few probe rounds after the old key is gone, then stop watching:
    // no member was ever seen anything but alive.
    std::thread::sleep(Duration::from_secs(3));
    let (polls, not_alive) = watch.finish();
    assert!(polls > 20, "the watch polled only {polls} times");
    assert!(
        not_alive.is_empty(),
        "members not alive during the rotation: {not_alive:?}"
    );

    // The cluster still works: a KV write and a service registered on the
    // client agent reach the servers.
    let r = c3.put("/v1/kv/rotated", "yes").unwrap();
    assert_eq!((r.status, r.body.trim()), (200, "true"), "{}", r.body);
    assert!(eventually(Duration::from_secs(10), || s1
        .get("/v1/kv/rotated?raw&stale")
        .is_ok_and(|r| r.body == "yes")));
    let r = c3
        .put(
            "/v1/agent/service/register",
            r#"{"Name":"after-rotation","Port":8080}"#,
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(eventually(Duration::from_secs(15), || s2
        .get("/v1/catalog/service/after-rotation")
        .is_ok_and(|r| r.body.contains("\"c3\""))));

    // Restarted with the old -encrypt flag still on its command line, the
    // client agent gossips with the keyring file's key and rejoins.
    assert!(c3.terminate().is_some(), "c3 did not stop");
    c3.spawn();
    assert!(
        eventually(Duration::from_secs(20), || all_alive(
            &[&s1, &s2, &c3],
            &names
        )),
        "c3 did not rejoin; log:\n{}",
        c3.log_text()
    );
    assert!(
        c3.log_text()
            .contains("keyring doesn't include key provided with -encrypt, using keyring"),
        "{}",
        c3.log_text()
    );
    let (keys, primary, nodes) = listed(&c3);
    assert_eq!(
        (keys, primary, nodes),
        (counts(&[(K2, 3)]), counts(&[(K2, 3)]), 3)
    );
    assert_eq!(keyring_file(&c3), vec![K2.to_string()]);
}

#[test]
fn an_agent_with_another_key_cannot_join_and_its_packets_are_counted() {
    let net = 151;
    let encrypt = format!("-encrypt={K1}");
    let mut s1 = Node::server(net, 1, 1, &[], &[&encrypt]);
    s1.spawn();
    wait_leader(&[&s1], Duration::from_secs(15)).expect("leader");
    let mut c2 = Node::client(net, 2, &[1], &[&encrypt]);
    c2.spawn();
    assert!(eventually(Duration::from_secs(15), || all_alive(
        &[&s1, &c2],
        &["s1", "c2"]
    )));
    let before = [undecryptable(&s1), undecryptable(&c2)];

    // Its packets reach both members and open under neither's keyring.
    let mut wrong = Node::client(
        net,
        3,
        &[1, 2],
        &[&format!("-encrypt={K3}"), "-retry-max=2"],
    );
    wrong.spawn();
    assert_eq!(
        wrong.wait_exit(Duration::from_secs(30)),
        Some(1),
        "log:\n{}",
        wrong.log_text()
    );
    assert!(wrong.log_text().contains("max join retry exhausted"));
    for n in [&s1, &c2] {
        let members = member_statuses(&n.ip).unwrap_or_default();
        assert!(
            !members.contains_key("c3"),
            "{} lists c3: {members:?}",
            n.name
        );
    }
    let after = [undecryptable(&s1), undecryptable(&c2)];
    assert!(after[0] > before[0], "s1: {before:?} -> {after:?}");
    assert!(after[1] > before[1], "c2: {before:?} -> {after:?}");

    // A burst of junk datagrams: each is counted, and the log gets a line
    // now and then, not one per packet.
    let junk = std::net::UdpSocket::bind(format!("127.0.{net}.9:0")).expect("bind");
    for i in 0..200u32 {
        let packet = [&[1u8][..], &i.to_be_bytes(), &[0xAB; 60]].concat();
        junk.send_to(&packet, format!("{}:8301", s1.ip))
            .expect("send");
    }
    assert!(
        eventually(Duration::from_secs(5), || undecryptable(&s1)
            >= after[0] + 200.0),
        "{} -> {}",
        after[0],
        undecryptable(&s1)
    );
    let lines = s1
        .log_text()
        .matches("No installed keys could decrypt the message")
        .count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} log lines for {} drops",
        undecryptable(&s1)
    );
    assert!(all_alive(&[&s1, &c2], &["s1", "c2"]));
}

#[test]
fn an_unencrypted_agent_answers_every_operation_with_consuls_500() {
    let a = TestAgent::dev_at("127.0.152.1", &[]);
    let get = a.get("/v1/operator/keyring").unwrap();
    assert_eq!(get.status, 500);
    assert_eq!(
        get.body,
        "4 errors occurred:\n\t* WAN error: 1/1 nodes reported failure\n\t* node1.dc1: Keyring is empty (encryption not enabled)\n\t* dc1 (LAN) error: 1/1 nodes reported failure\n\t* node1: Keyring is empty (encryption not enabled)\n\n"
    );
    for method in ["POST", "PUT", "DELETE"] {
        let r = a
            .request(
                method,
                "/v1/operator/keyring",
                Some(key_body(K2).as_bytes()),
                &[],
            )
            .unwrap();
        assert_eq!(r.status, 500, "{method}");
        assert_eq!(
            r.body,
            "4 errors occurred:\n\t* WAN error: 1/1 nodes reported failure\n\t* node1.dc1: No keyring to modify (encryption not enabled)\n\t* dc1 (LAN) error: 1/1 nodes reported failure\n\t* node1: No keyring to modify (encryption not enabled)\n\n",
            "{method}"
        );
    }
    // -dev keeps no keyring file.
    assert!(!a.data_dir().join("serf/local.keyring").exists());
    let self_ = a.get_ok("/v1/agent/self").json();
    assert_eq!(self_["Stats"]["serf_lan"]["encrypted"], "false");

    let (code, out, err) = cli(&[
        "keyring",
        &format!("-http-addr=127.0.152.1:{}", a.ports.http),
        "-list",
    ]);
    assert_eq!(code, 1);
    assert_eq!(out, "==> Gathering installed encryption keys...\n");
    assert!(
        err.starts_with("error: Unexpected response code: 500 (4 errors occurred:"),
        "{err}"
    );
    assert!(
        err.contains("node1: Keyring is empty (encryption not enabled)"),
        "{err}"
    );

    // The query string is checked as Consul checks it.
    let cases = [
        (
            "GET",
            "relay-factor=x",
            "Error parsing relay factor: strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        (
            "GET",
            "relay-factor=6",
            "Invalid relay-factor: Relay factor must be in range: [0, 5]",
        ),
        (
            "GET",
            "local-only=maybe",
            "Error parsing local-only: strconv.ParseBool: parsing \"maybe\": invalid syntax",
        ),
        (
            "POST",
            "local-only=true",
            "Invalid use of local-only: local-only can only be set for list requests",
        ),
    ];
    for (method, q, want) in cases {
        let r = a
            .request(
                method,
                &format!("/v1/operator/keyring?{q}"),
                Some(key_body(K2).as_bytes()),
                &[],
            )
            .unwrap();
        assert_eq!((r.status, r.body.as_str()), (400, want), "{method} ?{q}");
    }
    let r = a
        .request("POST", "/v1/operator/keyring", Some(b"{not json"), &[])
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.starts_with("Request decode failed"), "{}", r.body);
    let r = a
        .request("PATCH", "/v1/operator/keyring", None, &[])
        .unwrap();
    assert_eq!(r.status, 405);

    let (code, _, err) = cli(&["keyring", "-list", "-install", K2]);
    assert_eq!(
        (code, err.as_str()),
        (1, "Only a single action is allowed\n")
    );
    let (code, _, err) = cli(&["keyring"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Usage: cairn keyring [options]"), "{err}");
}

#[test]
fn bad_keys_and_bad_steps_are_refused_without_a_write() {
    let net = 153;
    let mut s1 = Node::server(net, 1, 1, &[], &[&format!("-encrypt={K1}")]);
    s1.spawn();
    wait_leader(&[&s1], Duration::from_secs(15)).expect("leader");
    let file = s1.data_dir.join("serf/local.keyring");
    let stored = std::fs::read(&file).expect("keyring file");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let cases = [
        // Not base64: refused before anything is asked.
        ("POST", "not base64", "2 errors occurred:\n\t* WAN error: illegal base64 data at input byte 3\n\t* dc1 (LAN) error: illegal base64 data at input byte 3\n\n"),
        ("PUT", "abcde", "2 errors occurred:\n\t* WAN error: illegal base64 data at input byte 4\n\t* dc1 (LAN) error: illegal base64 data at input byte 4\n\n"),
        // Base64 of 5 bytes: every member refuses it.
        ("POST", "c2hvcnQ=", "4 errors occurred:\n\t* WAN error: 1/1 nodes reported failure\n\t* s1.dc1: key size must be 16, 24 or 32 bytes\n\t* dc1 (LAN) error: 1/1 nodes reported failure\n\t* s1: key size must be 16, 24 or 32 bytes\n\n"),
        ("PUT", K2, "4 errors occurred:\n\t* WAN error: 1/1 nodes reported failure\n\t* s1.dc1: Requested key is not in the keyring\n\t* dc1 (LAN) error: 1/1 nodes reported failure\n\t* s1: Requested key is not in the keyring\n\n"),
        ("DELETE", K1, "4 errors occurred:\n\t* WAN error: 1/1 nodes reported failure\n\t* s1.dc1: Removing the primary key is not allowed\n\t* dc1 (LAN) error: 1/1 nodes reported failure\n\t* s1: Removing the primary key is not allowed\n\n"),
    ];
    for (method, key, want) in cases {
        let r = keyring(&s1, method, Some(&key_body(key)));
        assert_eq!((r.status, r.body.as_str()), (500, want), "{method} {key}");
    }
    assert_eq!(
        std::fs::read(&file).unwrap(),
        stored,
        "the keyring file was rewritten"
    );
    let (keys, primary, nodes) = listed(&s1);
    assert_eq!(
        (keys, primary, nodes),
        (counts(&[(K1, 1)]), counts(&[(K1, 1)]), 1)
    );

    // The CLI reports the same error and exits 1.
    let (code, out, err) = cli(&["keyring", &format!("-http-addr={}:8500", s1.ip), "-use", K2]);
    assert_eq!(code, 1);
    assert_eq!(out, "==> Changing primary gossip encryption key...\n");
    assert!(
        err.starts_with("error: Unexpected response code: 500"),
        "{err}"
    );
    assert!(
        err.contains("s1: Requested key is not in the keyring"),
        "{err}"
    );

    // Removing a key that is not installed and installing one twice are
    // no-ops that succeed, as in memberlist.
    let r = keyring(&s1, "DELETE", Some(&key_body(K3)));
    assert_eq!(r.status, 200, "{}", r.body);
    for _ in 0..2 {
        let r = keyring(&s1, "POST", Some(&key_body(K3)));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let (keys, _, _) = listed(&s1);
    assert_eq!(keys, counts(&[(K1, 1), (K3, 1)]));
    let self_ = s1.get("/v1/agent/self").unwrap().json();
    assert_eq!(self_["Stats"]["serf_lan"]["encrypted"], "true");
}

#[test]
fn acls_guard_the_keyring() {
    let net = 154;
    let root = "5f4b0c3f9d2a4b7c8e6f5a3d2c1b0a11";
    let mut s1 = Node::server(net, 1, 1, &[], &[&format!("-encrypt={K1}")]);
    let conf = json!({"acl": {"enabled": true, "default_policy": "deny",
        "tokens": {"initial_management": root}}});
    let path = s1.data_dir.parent().expect("parent").join("acl.json");
    std::fs::write(&path, conf.to_string()).expect("write config");
    s1.args.push(format!("-config-file={}", path.display()));
    s1.spawn();
    let call = |method: &str, path: &str, body: Option<&str>, token: Option<&str>| {
        let url = format!("http://{}:8500{path}", s1.ip);
        let headers: Vec<(&str, &str)> = token.map(|t| ("X-Consul-Token", t)).into_iter().collect();
        http_request(method, &url, body.map(str::as_bytes), &headers)
    };
    assert!(
        eventually(Duration::from_secs(30), || call(
            "GET",
            "/v1/operator/keyring",
            None,
            Some(root)
        )
        .is_ok_and(|r| r.status == 200)),
        "agent not ready; log:\n{}",
        s1.log_text()
    );

    let policy = call(
        "PUT",
        "/v1/acl/policy",
        Some(r#"{"Name":"keyring-read","Rules":"keyring = \"read\""}"#),
        Some(root),
    )
    .unwrap();
    assert_eq!(policy.status, 200, "{}", policy.body);
    let token = call(
        "PUT",
        "/v1/acl/token",
        Some(r#"{"Policies":[{"Name":"keyring-read"}]}"#),
        Some(root),
    )
    .unwrap()
    .json();
    let reader = token["SecretID"].as_str().expect("secret").to_string();
    let accessor = token["AccessorID"].as_str().expect("accessor").to_string();

    // keyring:read lists, and is not enough to change anything.
    let r = call("GET", "/v1/operator/keyring", None, Some(&reader)).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    for method in ["POST", "PUT", "DELETE"] {
        let r = call(
            method,
            "/v1/operator/keyring",
            Some(&key_body(K2)),
            Some(&reader),
        )
        .unwrap();
        assert_eq!(r.status, 403, "{method}: {}", r.body);
        assert_eq!(
            r.body,
            format!("Permission denied: token with AccessorID '{accessor}' lacks permission 'keyring:write'")
        );
    }
    // Anonymous may not even list.
    let r = call("GET", "/v1/operator/keyring", None, None).unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("lacks permission 'keyring:read'"),
        "{}",
        r.body
    );
    let listed = call("GET", "/v1/operator/keyring", None, Some(root))
        .unwrap()
        .json();
    let keys: Vec<String> = listed[0]["Keys"]
        .as_object()
        .expect("Keys")
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        keys,
        vec![K1.to_string()],
        "a denied write changed the keyring"
    );

    // The management token may; so may the CLI with -token.
    let addr = format!("-http-addr={}:8500", s1.ip);
    let (code, out, err) = cli(&["keyring", &addr, "-install", K2]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("lacks permission 'keyring:write'"), "{err}");
    let (code, out, err) = cli(&["keyring", &addr, "-token", root, "-install", K2]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = cli(&["keyring", &addr, &format!("-token={reader}"), "-list"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("  {K2} [1/1]")), "{out}");
}
