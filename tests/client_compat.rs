//! What Consul's client libraries (py-consul's own test suite among them)
//! expect of an agent right after `-dev` startup, against the real binary:
//! ACLs usable as soon as a leader is known, `xDS` in `/v1/agent/self`,
//! WAN member names, catalog writes for an unknown datacenter.
//!
//! Agents listen on 127.0.193.x and 127.0.194.x.

mod common;

use common::{eventually, http_request, TestAgent};
use serde_json::json;
use std::time::{Duration, Instant};

const ROOT: &str = "4c1d0b6e8f2a4b7c9d3e5f60718293a4";

/// A `-dev` agent with ACLs on (default allow, as Consul's default) and
/// ROOT as the initial management token, started without waiting for it.
fn acl_dev(ip: &str) -> (TestAgent, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("acl.json");
    let body = json!({
        "primary_datacenter": "dc1",
        "acl": {"enabled": true, "tokens": {"initial_management": ROOT}},
    });
    std::fs::write(&conf, body.to_string()).expect("write config");
    let mut a = TestAgent::unstarted(ip, &[&format!("-config-file={}", conf.display())]);
    let child = common::spawn_logged(&a.args(), &a.log, &[]);
    a.child = Some(child);
    (a, dir)
}

/// Polls `/v1/status/leader` the way client fixtures do, until it names one.
fn wait_for_leader(a: &TestAgent) {
    let known = eventually(Duration::from_secs(30), || {
        a.get("/v1/status/leader")
            .is_ok_and(|r| r.status == 200 && r.json().as_str().is_some_and(|s| !s.is_empty()))
    });
    assert!(known, "no leader; log:\n{}", a.log_text());
}

fn with_token(a: &TestAgent, method: &str, path: &str, body: Option<&str>) -> common::Resp {
    let url = format!("{}{path}", a.base());
    http_request(
        method,
        &url,
        body.map(str::as_bytes),
        &[("X-Consul-Token", ROOT)],
    )
    .expect("request")
}

#[test]
fn acls_answer_as_soon_as_a_leader_is_known() {
    let (a, _dir) = acl_dev("127.0.193.1");
    wait_for_leader(&a);
    // Anonymous requests meet the default policy (allow) at once, before
    // the leader has stored the anonymous token: not `ACL not found`.
    let r = a.put(
        "/v1/agent/service/register",
        r#"{"Name": "early", "Port": 80}"#,
    );
    assert_eq!(
        r.status, 200,
        "anonymous register right after election: {}",
        r.body
    );
    // The initial management token follows within moments (py-consul's
    // fixtures use it on the next request).
    let seen = Instant::now();
    let ready = eventually(Duration::from_secs(5), || {
        with_token(&a, "GET", "/v1/acl/token/self", None).status == 200
    });
    assert!(
        ready,
        "management token never worked; log:\n{}",
        a.log_text()
    );
    assert!(
        seen.elapsed() < Duration::from_millis(200),
        "management token took {:?} after the leader was known",
        seen.elapsed()
    );
    // And bootstrapping is then refused, as after Consul's initializeACLs.
    let r = a.put("/v1/acl/bootstrap", "");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(
        r.body.contains("ACL bootstrap no longer allowed"),
        "{}",
        r.body
    );
}

#[test]
fn agent_self_reports_xds() {
    let a = TestAgent::dev_at("127.0.193.2", &[]);
    let v = a.get_ok("/v1/agent/self").json();
    let keys: Vec<&str> = v
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    for k in [
        "Config",
        "DebugConfig",
        "Coord",
        "Member",
        "Stats",
        "Meta",
        "xDS",
    ] {
        assert!(keys.contains(&k), "{k} missing from {keys:?}");
    }
    let xds = &v["xDS"];
    assert!(xds["SupportedProxies"]["envoy"].is_array(), "{xds}");
    // No gRPC listener: the ports as configured (-1), Port the plaintext one.
    assert_eq!(xds["Ports"], json!({"Plaintext": -1, "TLS": -1}));
    assert_eq!(xds["Port"], json!(-1));
}

#[test]
fn wan_members_are_named_node_dot_datacenter() {
    let a = TestAgent::dev_at("127.0.193.3", &[]);
    let lan = a.get_ok("/v1/agent/members").json();
    assert_eq!(lan[0]["Name"], "node1");
    let wan = a.get_ok("/v1/agent/members?wan=1").json();
    assert_eq!(wan.as_array().map(Vec::len), Some(1), "{wan}");
    assert_eq!(wan[0]["Name"], "node1.dc1");
    assert_eq!(wan[0]["Tags"]["dc"], "dc1");
}

#[test]
fn catalog_writes_for_another_datacenter_fail() {
    let a = TestAgent::dev_at("127.0.193.4", &[]);
    let r = a.put(
        "/v1/catalog/register",
        r#"{"Datacenter": "dc2", "Node": "foo", "Address": "10.1.10.11"}"#,
    );
    assert_eq!((r.status, r.body.trim()), (500, "No path to datacenter"));
    assert_eq!(a.get_ok("/v1/catalog/node/foo").json(), json!(null));
    let r = a.put(
        "/v1/catalog/deregister",
        &format!(r#"{{"Datacenter": "dc2", "Node": "{}"}}"#, a.node),
    );
    assert_eq!((r.status, r.body.trim()), (500, "No path to datacenter"));
    // The local datacenter, named or not, still works.
    let r = a.put(
        "/v1/catalog/register",
        r#"{"Datacenter": "dc1", "Node": "foo", "Address": "10.1.10.11"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Reads `child`'s stdout lines into a channel.
fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Flips a TTL check between passing and warning until `rx` yields a line
/// containing `want` (a monitor may attach after the first change).
fn wait_for_line(a: &TestAgent, rx: &std::sync::mpsc::Receiver<String>, want: &str) -> String {
    let r = a.put(
        "/v1/agent/check/register",
        r#"{"Name": "mon", "TTL": "60s"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut flip = false;
    while Instant::now() < deadline {
        flip = !flip;
        let path = if flip {
            "/v1/agent/check/pass/mon"
        } else {
            "/v1/agent/check/warn/mon"
        };
        assert_eq!(a.put(path, "").status, 200);
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if line.contains(want) {
                return line;
            }
            if Instant::now() > deadline {
                break;
            }
        }
    }
    panic!("no line with {want:?}; log:\n{}", a.log_text());
}

#[test]
fn monitor_streams_the_log_at_the_asked_level() {
    let a = TestAgent::dev_at("127.0.193.5", &[]);
    let r = a.get_ok("/v1/agent/monitor?loglevel=not-a-real-level");
    assert_eq!(
        (r.status, r.body.trim()),
        (400, "Unknown log level: not-a-real-level")
    );

    // The agent logs at INFO; `cairn monitor -log-level=debug` sees the
    // DEBUG line of a check status change, in hclog's form.
    let mut child = std::process::Command::new(common::BIN)
        .args([
            "monitor",
            "-log-level=debug",
            &format!("-http-addr={}", a.base()),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cairn monitor");
    let rx = lines_of(&mut child);
    let line = wait_for_line(&a, &rx, "check status changed");
    assert!(
        line.contains(" [DEBUG] agent: check status changed"),
        "{line}"
    );
    assert!(
        !a.log_text().contains("check status changed"),
        "the agent's own log is at INFO"
    );
    // SIGTERM ends `cairn monitor` with 0, as Consul's does.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn monitor_streams_json_with_logjson() {
    use std::io::{BufRead, Write};
    let a = TestAgent::dev_at("127.0.193.6", &[]);
    let mut s = std::net::TcpStream::connect((a.ip.as_str(), a.ports.http)).expect("connect");
    write!(
        s,
        "GET /v1/agent/monitor?loglevel=debug&logjson HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .expect("write");
    let reader = std::io::BufReader::new(s.try_clone().expect("clone"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = wait_for_line(&a, &rx, "check status changed");
    let v: serde_json::Value = serde_json::from_str(line.trim()).expect("a JSON line");
    assert_eq!(v["@level"], "debug");
    assert_eq!(v["@module"], "agent");
    assert_eq!(v["@message"], "check status changed");
    assert_eq!(v["check"], "mon");
    assert!(
        v["@timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{v}"
    );
}

#[test]
fn connect_ingress_and_unknown_peer_reads_are_empty() {
    let a = TestAgent::dev_at("127.0.193.7", &[]);
    let r = a.put(
        "/v1/agent/service/register",
        r#"{"Name": "web", "Tags": ["prod"]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(eventually(Duration::from_secs(10), || {
        a.get_ok("/v1/catalog/service/web")
            .json()
            .as_array()
            .is_some_and(|v| v.len() == 1)
    }));
    // A plain service has no Connect-capable instances and no ingress
    // gateway; the reads succeed with Consul's headers and an empty list.
    for path in [
        "/v1/catalog/connect/web",
        "/v1/catalog/connect/web?filter=%22prod%22%20in%20ServiceTags",
        "/v1/health/connect/web",
        "/v1/health/ingress/web",
        "/v1/catalog/service/web?peer=unknown-peer",
        "/v1/health/service/web?peer=unknown-peer",
    ] {
        let r = a.get_ok(path);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert_eq!(r.json(), json!([]), "{path}");
        assert!(r.index() > 0, "{path}: X-Consul-Index");
    }
    // Filters are still checked.
    let r = a.get_ok("/v1/catalog/connect/web?filter=not%20valid((");
    assert_eq!(r.status, 500, "{}", r.body);
}

#[test]
fn acl_policy_ids_of_another_length_are_refused() {
    let (a, _dir) = acl_dev("127.0.194.1");
    wait_for_leader(&a);
    assert!(eventually(Duration::from_secs(5), || {
        with_token(&a, "GET", "/v1/acl/token/self", None).status == 200
    }));
    for method in ["GET", "DELETE"] {
        let r = with_token(&a, method, "/v1/acl/policy/unknown", None);
        assert_eq!(
            (r.status, r.body.trim()),
            (500, "index error: UUID must be 36 characters"),
            "{method}"
        );
    }
    // A well-formed ID that names no policy: 404, as before.
    let r = with_token(
        &a,
        "GET",
        "/v1/acl/policy/00000000-0000-0000-0000-000000000099",
        None,
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = with_token(
        &a,
        "GET",
        "/v1/acl/policy/00000000-0000-0000-0000-000000000001",
        None,
    );
    assert_eq!(r.json()["Name"], "global-management");
}
