//! Snapshots against the real binary: `/v1/snapshot` and `cairn snapshot
//! save|restore|inspect` on a three-server cluster with a client agent
//! (every server and the client's view end up with the restored state,
//! blocking queries wake, indexes only move forward), from one independent
//! agent into another, refused archives that change nothing, ACLs, and
//! the CLI's output and exit codes.

mod common;

use common::acl::call;
use common::cluster::{wait_leader, Node};
use common::{eventually, Resp, BIN};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// `cairn <args>`: exit code, stdout, stderr.
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_TOKEN")
        .output()
        .expect("run cairn");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn addr(n: &Node) -> String {
    format!("-http-addr={}:8500", n.ip)
}

fn put_kv(n: &Node, key: &str, value: &str) {
    let r = n.put(&format!("/v1/kv/{key}"), value).expect("kv put");
    assert_eq!(r.status, 200, "put {key}: {}", r.body);
}

/// The raw value of `key` on `n` (None: 404), read `?stale` so each
/// agent answers from its own replica or view.
fn stale_kv(n: &Node, key: &str) -> Option<String> {
    let r = n.get(&format!("/v1/kv/{key}?raw&stale")).expect("kv get");
    match r.status {
        200 => Some(r.body),
        404 => None,
        s => panic!("GET {key} on {}: {s} {}", n.name, r.body),
    }
}

fn register_external(n: &Node, node: &str, service: &str) {
    let body = json!({
        "Node": node,
        "Address": "10.1.2.3",
        "Service": {"ID": service, "Service": service, "Port": 8080},
    });
    let r = n
        .put("/v1/catalog/register", &body.to_string())
        .expect("register");
    assert_eq!(r.status, 200, "register: {}", r.body);
}

fn has_service(n: &Node, service: &str) -> bool {
    let r = n
        .get(&format!("/v1/catalog/service/{service}?stale"))
        .expect("catalog");
    r.status == 200 && r.json().as_array().is_some_and(|a| !a.is_empty())
}

/// A single `-dev` agent on 127.0.`net`.1, ready to write.
fn dev(net: u8) -> Node {
    let mut n = Node::new("dev", net, 1, vec!["-dev".into()]);
    n.spawn();
    let ready = eventually(Duration::from_secs(30), || {
        !n.leader().is_empty() && n.put("/v1/kv/ready", "1").is_ok_and(|r| r.status == 200)
    });
    assert!(ready, "dev agent not ready; log:\n{}", n.log_text());
    n
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read snapshot file")
}

/// `save` through the CLI; the index it reports.
fn save(n: &Node, file: &Path) -> u64 {
    let (code, out, err) = cli(&["snapshot", "save", &addr(n), file.to_str().unwrap()]);
    assert_eq!(code, 0, "save: {out} {err}");
    let index = out
        .trim()
        .strip_prefix("Saved and verified snapshot to index ")
        .unwrap_or_else(|| panic!("save said {out:?}"))
        .parse::<u64>()
        .expect("index");
    assert!(index > 0);
    assert!(
        !Path::new(&format!("{}.part", file.display())).exists(),
        "the .part file is renamed"
    );
    index
}

fn restore(n: &Node, file: &Path) {
    let (code, out, err) = cli(&["snapshot", "restore", &addr(n), file.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (0, "Restored snapshot\n"), "{err}");
}

fn kv_index(n: &Node) -> u64 {
    let r = n.get("/v1/kv/?recurse").expect("kv list");
    assert_eq!(r.status, 200, "{}", r.body);
    r.index()
}

#[test]
fn three_servers_and_a_client_agent_restore_exactly_the_saved_state() {
    let net = 165;
    let mut servers: Vec<Node> = (1..=3)
        .map(|h| {
            let others: Vec<u8> = (1..=3).filter(|o| *o != h).collect();
            Node::server(net, h, 3, &others, &[])
        })
        .collect();
    for s in &mut servers {
        s.spawn();
    }
    let mut client = Node::client(net, 4, &[1, 2, 3], &[]);
    client.spawn();
    let refs: Vec<&Node> = servers.iter().collect();
    wait_leader(&refs, Duration::from_secs(30)).expect("a leader");
    assert!(
        eventually(Duration::from_secs(30), || client
            .put("/v1/kv/probe", "1")
            .is_ok_and(|r| r.status == 200)),
        "client agent not ready; log:\n{}",
        client.log_text()
    );

    for i in 1..=3 {
        put_kv(&servers[0], &format!("app/{i}"), &format!("v{i}"));
    }
    register_external(&servers[1], "ext1", "web");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.snap");
    // Saved through the client agent, which hands it to a server.
    let saved_at = save(&client, &file);
    assert_eq!(&read(&file)[..2], &[0x1f, 0x8b], "a gzip archive");

    // Change and delete what was saved, add what was not.
    put_kv(&servers[0], "app/1", "changed");
    let r = servers[2].request("DELETE", "/v1/kv/app/2", None).unwrap();
    assert_eq!(r.status, 200);
    put_kv(&servers[0], "app/4", "new");
    let r = servers[0]
        .put(
            "/v1/catalog/deregister",
            &json!({"Node": "ext1"}).to_string(),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);

    // A watcher of app/1 on the client agent, blocked at its current index.
    let before = client.get("/v1/kv/app/1").unwrap();
    assert_eq!(before.status, 200);
    let seen = before.index();
    let list_before = kv_index(&client);
    let watch_url = format!(
        "http://{}:8500/v1/kv/app/1?index={seen}&wait=30s",
        client.ip
    );
    let watcher = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let r = common::http_request("GET", &watch_url, None, &[]).expect("blocking GET");
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));

    restore(&servers[1], &file);

    let (woken, waited) = watcher.join().unwrap();
    assert!(
        waited < Duration::from_secs(20),
        "the watcher woke at the restore"
    );
    assert_eq!(woken.status, 200, "{}", woken.body);
    assert!(
        woken.index() > seen,
        "a woken watcher sees its index move forward: {} after {seen}",
        woken.index()
    );
    let value = woken.json()[0]["Value"].as_str().unwrap().to_string();
    assert_eq!(value, "djE=", "the watcher sees the restored value (v1)");

    for n in servers.iter().chain(std::iter::once(&client)) {
        let restored = eventually(Duration::from_secs(10), || {
            stale_kv(n, "app/1").as_deref() == Some("v1")
                && stale_kv(n, "app/2").as_deref() == Some("v2")
                && stale_kv(n, "app/3").as_deref() == Some("v3")
                && stale_kv(n, "app/4").is_none()
                && has_service(n, "web")
        });
        assert!(restored, "{} holds the restored state", n.name);
    }
    // Indexes never went back, whether of the list or of one key.
    let list_after = kv_index(&client);
    assert!(
        list_after > list_before && list_after > saved_at,
        "kv index {list_after} after {list_before} (saved at {saved_at})"
    );
    let one = client.get("/v1/kv/app/3").unwrap();
    assert!(
        one.index() >= list_before,
        "{} < {list_before}",
        one.index()
    );

    // The cluster goes on writing after the restore, on every server.
    put_kv(&client, "app/5", "after");
    for n in &servers {
        assert!(
            eventually(Duration::from_secs(10), || stale_kv(n, "app/5").as_deref()
                == Some("after")),
            "{} applies writes after the restore",
            n.name
        );
    }
}

#[test]
fn a_snapshot_moves_into_another_independent_agent() {
    let a = dev(166);
    let b = dev(167);
    // `a` is further along than `b`: its entries carry higher indexes.
    for i in 0..40 {
        put_kv(&a, &format!("cfg/{i}"), &format!("a{i}"));
    }
    register_external(&a, "ext-a", "db");
    let session = a
        .put(
            "/v1/session/create",
            &json!({"Name": "s", "TTL": "30s", "Behavior": "delete"}).to_string(),
        )
        .unwrap();
    assert_eq!(session.status, 200, "{}", session.body);
    let sid = session.json()["ID"].as_str().unwrap().to_string();
    let r = a
        .put(&format!("/v1/kv/cfg/locked?acquire={sid}"), "held")
        .unwrap();
    assert_eq!(r.body.trim(), "true");
    put_kv(&b, "only-on-b", "x");
    let b_before = kv_index(&b);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.snap");
    let saved_at = save(&a, &file);
    restore(&b, &file);

    assert_eq!(stale_kv(&b, "only-on-b"), None, "b's own data is replaced");
    for i in [0, 17, 39] {
        assert_eq!(stale_kv(&b, &format!("cfg/{i}")), Some(format!("a{i}")));
    }
    assert!(has_service(&b, "db"));
    // The session came along, still holding its lock.
    let info = b.get(&format!("/v1/session/info/{sid}")).unwrap();
    assert_eq!(info.status, 200);
    assert_eq!(info.json()[0]["ID"], sid.as_str(), "{}", info.body);
    let locked = b.get("/v1/kv/cfg/locked").unwrap().json();
    assert_eq!(locked[0]["Session"], sid.as_str());

    // b's indexes went forward from where b was, and a write after the
    // restore is dated after everything restored (a's indexes were higher).
    let after = kv_index(&b);
    assert!(after > b_before, "{after} after {b_before}");
    put_kv(&b, "cfg/new", "n");
    let list = b.get("/v1/kv/cfg/?recurse").unwrap().json();
    let newest = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["Key"] == "cfg/new")
        .unwrap()["ModifyIndex"]
        .as_u64()
        .unwrap();
    for e in list.as_array().unwrap() {
        assert!(
            e["ModifyIndex"].as_u64().unwrap() <= newest,
            "{} dated after the write that followed the restore: {e}",
            e["Key"]
        );
    }
    assert!(saved_at > 40);

    // A snapshot of b now inspects with b's position.
    let again = dir.path().join("b.snap");
    let b_index = save(&b, &again);
    let (code, out, _) = cli(&["snapshot", "inspect", again.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!(" Index        {b_index}\n")), "{out}");
}

#[test]
fn broken_archives_are_refused_and_change_nothing() {
    let n = dev(168);
    put_kv(&n, "keep", "original");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("good.snap");
    save(&n, &file);
    put_kv(&n, "keep", "current");
    put_kv(&n, "added", "after-save");
    let index_before = kv_index(&n);
    let good = read(&file);

    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() / 2].to_vec()),
        ("last bytes cut", good[..good.len() - 4].to_vec()),
        ("byte flipped", flipped),
        ("not gzip", b"this is not a snapshot".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in &cases {
        let url = format!("http://{}:8500/v1/snapshot", n.ip);
        let r: Resp = common::http_request("PUT", &url, Some(bytes), &[]).unwrap();
        assert_eq!(r.status, 500, "{what}: {}", r.body);
        assert!(
            r.body.starts_with("failed to decompress snapshot")
                || r.body.starts_with("failed to read snapshot file"),
            "{what}: {:?}",
            r.body
        );
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{what}"
        );

        let path = dir.path().join("bad.snap");
        std::fs::write(&path, bytes).unwrap();
        let (code, out, err) = cli(&["snapshot", "restore", &addr(&n), path.to_str().unwrap()]);
        assert_eq!(code, 1, "{what}: {out}");
        assert!(
            err.starts_with("Error restoring snapshot: Unexpected response code: 500 (failed to"),
            "{what}: {err:?}"
        );
        let (code, _, err) = cli(&["snapshot", "inspect", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{what}");
        assert!(
            err.starts_with("Error extracting snapshot data: failed to"),
            "{what}: {err:?}"
        );
    }
    // A state.bin that is not cairn's (inside a valid container) is
    // refused too.
    let foreign = cairn::snapshot::write(&cairn::snapshot::Meta::new(3, 1, 7), b"garbage").unwrap();
    let url = format!("http://{}:8500/v1/snapshot", n.ip);
    let r = common::http_request("PUT", &url, Some(&foreign), &[]).unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(
        r.body,
        "failed to decode snapshot state: state.bin is not a cairn catalog snapshot"
    );

    assert_eq!(stale_kv(&n, "keep").as_deref(), Some("current"));
    assert_eq!(stale_kv(&n, "added").as_deref(), Some("after-save"));
    assert_eq!(kv_index(&n), index_before, "nothing was written");

    // The good archive still restores afterwards.
    restore(&n, &file);
    assert_eq!(stale_kv(&n, "keep").as_deref(), Some("original"));
    assert_eq!(stale_kv(&n, "added"), None);
}

#[test]
fn inspect_prints_consuls_table_and_the_cli_fails_as_consul() {
    let n = dev(169);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.snap");
    let index = save(&n, &file);
    let size = {
        // state.bin's size, as meta.json records it.
        let (code, out, _) = cli(&["snapshot", "inspect", file.to_str().unwrap()]);
        assert_eq!(code, 0);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{out}");
        let labels: Vec<&str> = lines.iter().map(|l| &l[..14]).collect();
        assert_eq!(
            labels,
            [
                " ID           ",
                " Size         ",
                " Index        ",
                " Term         ",
                " Version      "
            ]
        );
        assert_eq!(lines[2], format!(" Index        {index}"));
        assert_eq!(lines[4], " Version      1");
        let term: u64 = lines[3][14..].parse().unwrap();
        assert!(term >= 1);
        assert!(
            lines[0][14..].starts_with(&format!("{term}-{index}-")),
            "{out}"
        );
        lines[1][14..].parse::<u64>().unwrap()
    };
    assert!(size > 0);

    // Argument errors, as Consul words them.
    let (code, _, err) = cli(&["snapshot", "save", &addr(&n)]);
    assert_eq!((code, err.trim()), (1, "Missing FILE argument"));
    let (code, _, err) = cli(&["snapshot", "inspect", "a", "b"]);
    assert_eq!(
        (code, err.trim()),
        (1, "Too many arguments (expected 1, got 2)")
    );
    let (code, _, err) = cli(&["snapshot", "restore", &addr(&n), "/nonexistent/file"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Error opening snapshot file: "), "{err}");
    let (code, _, _) = cli(&["snapshot"]);
    assert_eq!(code, 1);
    let (code, _, _) = cli(&["snapshot", "bogus"]);
    assert_eq!(code, 1);
    // No agent there.
    let target = dir.path().join("never.snap");
    let (code, _, err) = cli(&[
        "snapshot",
        "save",
        "-http-addr=127.0.169.9:1",
        target.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(err.starts_with("Error saving snapshot: "), "{err}");
    assert!(!target.exists());
    // CONSUL_HTTP_ADDR is honoured.
    let out = std::process::Command::new(BIN)
        .args(["snapshot", "save", target.to_str().unwrap()])
        .env("CONSUL_HTTP_ADDR", format!("{}:8500", n.ip))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(target.exists());

    // Other methods: 405 with Consul's Allow list.
    let r = n.request("DELETE", "/v1/snapshot", None).unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("OPTIONS,GET,PUT"));
    // The headers of a save.
    let r = n.get("/v1/snapshot?stale").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/x-gzip"));
    assert!(r.index() >= index);
    assert!(r.header("X-Consul-KnownLeader").is_some());
}

#[test]
fn snapshots_need_acl_write() {
    const ROOT: &str = "9d3c6b1a0f2e4d5c8b7a6f5e4d3c2b1a";
    let mut node = Node::server(169, 2, 1, &[], &[]);
    let conf = json!({"acl": {"enabled": true, "default_policy": "allow",
        "tokens": {"initial_management": ROOT}}});
    common::acl::add_config(&mut node, "acl.json", &conf);
    node.spawn();
    // Ready once the initial management token writes (default allow
    // would let anonymous reads through before that).
    assert!(eventually(Duration::from_secs(30), || call(
        &node,
        "PUT",
        "/v1/kv/k",
        Some("v"),
        Some(ROOT)
    )
    .is_some_and(|r| r.status == 200)));

    // default_policy allow grants no acl:write: anonymous is refused.
    let r = call(&node, "GET", "/v1/snapshot", None, None).unwrap();
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.starts_with("Permission denied"), "{}", r.body);
    assert!(r.body.contains("acl:write"), "{}", r.body);
    let r = call(&node, "PUT", "/v1/snapshot", Some("x"), Some("anonymous")).unwrap();
    assert_eq!(r.status, 403, "{}", r.body);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("acl.snap");
    let f = file.to_str().unwrap();
    let (code, _, err) = cli(&["snapshot", "save", &addr(&node), f]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("Error saving snapshot: Unexpected response code: 403"),
        "{err}"
    );
    let token = format!("-token={ROOT}");
    let (code, out, err) = cli(&["snapshot", "save", &addr(&node), &token, f]);
    assert_eq!(code, 0, "{out} {err}");
    // CONSUL_HTTP_TOKEN works as -token does.
    let out = std::process::Command::new(BIN)
        .args(["snapshot", "restore", &addr(&node), f])
        .env("CONSUL_HTTP_TOKEN", ROOT)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // The restored ACL state still knows the management token.
    let r = call(&node, "GET", "/v1/acl/token/self", None, Some(ROOT)).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}
