//! Connection limits and orderly shutdown, against the real binary:
//! `limits.http_max_conns_per_client` answers a connection over the limit
//! with Consul's 429, `limits.rpc_max_conns_per_client` closes one, and on
//! SIGTERM the agent finishes in-flight requests (blocking queries return
//! at once) and exits cleanly.

mod common;

use common::{eventually, TestAgent};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn agent_with_limits(http: u32, rpc: u32) -> TestAgent {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("limits.json");
    std::fs::write(
        &path,
        format!(r#"{{"limits":{{"http_max_conns_per_client":{http},"rpc_max_conns_per_client":{rpc}}}}}"#),
    )
    .unwrap();
    let agent = TestAgent::dev_with(&[&format!("-config-file={}", path.display())]);
    // The file is read at startup only.
    drop(dir);
    agent
}

/// Sends one keep-alive request and reads the status line.
fn request_on(conn: &mut TcpStream) -> String {
    conn.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = conn.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn http_connections_over_the_per_client_limit_get_429() {
    let agent = agent_with_limits(2, 100);
    let addr = format!("127.0.0.1:{}", agent.ports.http);
    let open = || {
        let c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c
    };
    // The readiness probes' connections may still be closing: wait until
    // two connections of our own are served.
    let mut pair = None;
    assert!(eventually(Duration::from_secs(5), || {
        let (mut a, mut b) = (open(), open());
        let ok = request_on(&mut a) == "HTTP/1.1 200 OK" && request_on(&mut b) == "HTTP/1.1 200 OK";
        if ok {
            pair = Some((a, b));
        }
        ok
    }));
    let (mut a, b) = pair.unwrap();
    let mut c = open();
    let mut answer = String::new();
    let _ = c.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 429 Too Many Requests"),
        "{answer:?}"
    );
    assert!(answer.contains("Your IP is issuing too many concurrent connections"));
    // The first two keep working; closing one frees a slot.
    assert_eq!(request_on(&mut a), "HTTP/1.1 200 OK");
    drop(b);
    assert!(eventually(Duration::from_secs(5), || request_on(
        &mut open()
    )
        == "HTTP/1.1 200 OK"));
}

#[test]
fn rpc_connections_over_the_per_client_limit_are_closed() {
    let agent = agent_with_limits(200, 2);
    let addr = format!("127.0.0.1:{}", agent.ports.server);
    let held: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut over = TcpStream::connect(&addr).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(over.read(&mut buf).unwrap_or(0), 0, "closed at once");
    assert!(eventually(Duration::from_secs(5), || agent
        .log_text()
        .contains("rpc_max_conns_per_client (2) exceeded")));
    drop(held);
    // The agent's own work is unaffected.
    assert_eq!(agent.put("/v1/kv/k", "v").body.trim(), "true");
}

#[test]
fn sigterm_releases_blocking_queries_and_exits_cleanly() {
    let mut agent = TestAgent::dev();
    assert_eq!(agent.put("/v1/kv/watched", "1").body.trim(), "true");
    let index = agent.get_ok("/v1/kv/watched").index();
    let url = format!("{}/v1/kv/watched?index={index}&wait=5m", agent.base());
    let blocked = std::thread::spawn(move || {
        let started = Instant::now();
        let r = common::http_request("GET", &url, None, &[]);
        (r.map(|r| r.status), started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let code = agent.terminate();
    assert_eq!(code, Some(0), "exit code; log:\n{}", agent.log_text());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "shutdown took {:?}",
        started.elapsed()
    );
    let (status, took) = blocked.join().unwrap();
    assert_eq!(status, Ok(200), "the blocking query was answered");
    // Released by the shutdown, not by the drain timeout running out.
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
}
