//! Blocking-query precision against the real binary: a blocked KV read
//! returns promptly on a change to its key or prefix and keeps blocking
//! through writes elsewhere; `cairn watch` runs its handler per change.

mod common;

use common::{eventually, TestAgent, BIN};
use std::time::{Duration, Instant};

struct Blocked {
    handle: std::thread::JoinHandle<(Instant, u64, u16, String)>,
}

/// Starts a blocking GET in a thread; resolves to (returned at, index, status, body).
fn block(a: &TestAgent, path: &str, index: u64, wait: &str) -> Blocked {
    let url = format!(
        "{}{path}{}index={index}&wait={wait}",
        a.base(),
        if path.contains('?') { "&" } else { "?" }
    );
    let handle = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let r = client.get(url).send().expect("GET");
        let at = Instant::now();
        let idx = r.headers()["X-Consul-Index"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let status = r.status().as_u16();
        (at, idx, status, r.text().unwrap())
    });
    // Let the request reach the agent and register its watch.
    std::thread::sleep(Duration::from_millis(300));
    Blocked { handle }
}

#[test]
fn kv_read_returns_within_100ms_of_a_change_to_its_key() {
    let a = TestAgent::dev();
    a.put("/v1/kv/app/config", "v1");
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let idx_before = a.get_ok("/v1/kv/app/config").index();
        let b = block(&a, "/v1/kv/app/config", idx_before, "30s");
        let r = a.put("/v1/kv/app/config", &format!("v{round}"));
        let committed = Instant::now();
        assert_eq!(r.body.trim(), "true");
        let (at, idx, status, body) = b.handle.join().unwrap();
        let lag = at.saturating_duration_since(committed);
        worst = worst.max(lag);
        assert_eq!(status, 200);
        assert!(idx > idx_before, "the index moved");
        assert!(body.contains("app/config"));
    }
    eprintln!("worst wake-up after a committed write: {worst:?}");
    assert!(worst < Duration::from_millis(100), "{worst:?}");
}

#[test]
fn kv_read_keeps_blocking_through_unrelated_writes() {
    let a = TestAgent::dev();
    a.put("/v1/kv/svc/a", "1");
    let index = a.get_ok("/v1/kv/svc/a").index();
    let missing_index = a.get_ok("/v1/kv/svc/missing").index();
    let started = Instant::now();
    let key = block(&a, "/v1/kv/svc/a", index, "2s");
    let absent = block(&a, "/v1/kv/svc/missing", missing_index, "2s");
    let prefix_other = block(&a, "/v1/kv/other/?recurse", 1, "2s");
    // Writes elsewhere: another key, a key that extends this one, another
    // prefix, a delete, a session.
    let prefix_index = a.get_ok("/v1/kv/zzz/?recurse").index();
    let zzz = block(&a, "/v1/kv/zzz/?recurse", prefix_index, "2s");
    for path in [
        "/v1/kv/svc/b",
        "/v1/kv/svc/ab",
        "/v1/kv/svc/a2",
        "/v1/kv/elsewhere",
    ] {
        assert_eq!(a.put(path, "x").body.trim(), "true");
    }
    a.delete("/v1/kv/svc/b");
    a.put("/v1/session/create", "");
    for (name, b, want_index) in [
        ("key", key, index),
        ("missing key", absent, missing_index),
        ("empty prefix", zzz, prefix_index),
    ] {
        let (at, idx, _, _) = b.handle.join().unwrap();
        let waited = at.duration_since(started);
        assert!(
            waited >= Duration::from_secs(2),
            "{name}: returned after {waited:?} on an unrelated write"
        );
        assert_eq!(idx, want_index, "{name}: same index on timeout");
    }
    // A prefix read with a low index returns at once (its result is newer).
    let (_, _, status, _) = prefix_other.handle.join().unwrap();
    assert_eq!(status, 404);
}

#[test]
fn prefix_read_wakes_on_writes_and_deletes_under_it() {
    let a = TestAgent::dev();
    a.put("/v1/kv/cfg/a", "1");
    a.put("/v1/kv/cfg/b", "2");
    let index = a.get_ok("/v1/kv/cfg/?recurse").index();

    let b = block(&a, "/v1/kv/cfg/?recurse", index, "10s");
    let t0 = Instant::now();
    a.put("/v1/kv/cfg/c", "3");
    let (at, idx, _, body) = b.handle.join().unwrap();
    assert!(at.duration_since(t0) < Duration::from_secs(1));
    assert!(idx > index && body.contains("cfg/c"));

    // Deleting the newest key leaves only older indexes behind; the
    // watcher still sees the index move past the one it had.
    let b = block(&a, "/v1/kv/cfg/?keys", idx, "10s");
    let t0 = Instant::now();
    a.delete("/v1/kv/cfg/c");
    let (at, after_delete, _, body) = b.handle.join().unwrap();
    assert!(
        at.duration_since(t0) < Duration::from_secs(1),
        "woken by the delete"
    );
    assert!(after_delete > idx, "index moved: {after_delete} > {idx}");
    assert!(!body.contains("cfg/c"));

    // A lock released by a session invalidation wakes the key's readers.
    let s = a.put("/v1/session/create", r#"{"LockDelay":"0s"}"#).json()["ID"]
        .as_str()
        .unwrap()
        .to_string();
    a.put(&format!("/v1/kv/cfg/a?acquire={s}"), "held");
    let index = a.get_ok("/v1/kv/cfg/a").index();
    let b = block(&a, "/v1/kv/cfg/a", index, "10s");
    a.put(&format!("/v1/session/destroy/{s}"), "");
    let (_, idx, _, body) = b.handle.join().unwrap();
    assert!(idx > index);
    assert!(!body.contains("\"Session\""), "{body}");
}

#[test]
fn cairn_watch_runs_its_handler_on_each_change() {
    let a = TestAgent::dev();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let handler = format!("cat >> {}; echo >> {}", out.display(), out.display());
    let mut watch = std::process::Command::new(BIN)
        .args([
            "watch",
            &format!("-http-addr=127.0.0.1:{}", a.ports.http),
            "-type=key",
            "-key=feature/flag",
            &handler,
        ])
        .spawn()
        .expect("cairn watch");
    let read = || std::fs::read_to_string(&out).unwrap_or_default();
    // The first run reports the current state (no key yet: null).
    assert!(eventually(Duration::from_secs(10), || read().contains("null")));
    a.put("/v1/kv/feature/flag", "on");
    assert!(eventually(Duration::from_secs(5), || read().contains("\"b24=\"")));
    a.put("/v1/kv/feature/other", "x");
    a.put("/v1/kv/feature/flag", "off");
    assert!(eventually(Duration::from_secs(5), || read().contains("\"b2Zm\"")));
    std::thread::sleep(Duration::from_millis(300));
    let runs = read().lines().filter(|l| !l.trim().is_empty()).count();
    assert_eq!(runs, 3, "one run per change of the key:\n{}", read());

    let mut services = std::process::Command::new(BIN)
        .args([
            "watch",
            &format!("-http-addr=127.0.0.1:{}", a.ports.http),
            "-type=services",
            &format!("cat > {}", dir.path().join("services").display()),
        ])
        .spawn()
        .expect("cairn watch");
    a.put(
        "/v1/agent/service/register",
        r#"{"Name":"web","Port":80,"Tags":["v1"]}"#,
    );
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(dir.path().join("services"))
            .unwrap_or_default()
            .contains("\"web\"")
    }));
    let _ = watch.kill();
    let _ = services.kill();
    let _ = watch.wait();
    let _ = services.wait();
}
