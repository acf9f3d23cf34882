//! Health check runners against the real binary: each check type moves a
//! service in and out of DNS answers and `/v1/health/service/<n>?passing`.

mod common;

use common::checks::{FlipHttp, GrpcHealth, H2Server, TlsHttp, NOT_SERVING, SERVING};
use common::{eventually, TestAgent};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn passing_count(a: &TestAgent, svc: &str) -> usize {
    a.get_ok(&format!("/v1/health/service/{svc}?passing"))
        .json()
        .as_array()
        .map(|v| v.len())
        .unwrap_or(0)
}

/// Whether `<svc>.service.consul` has an A record.
fn in_dns(a: &TestAgent, svc: &str) -> bool {
    a.dig(&[&format!("{svc}.service.consul"), "A", "+short"])
        .contains("127.0.0.1")
}

/// The check as the agent sees it (`/v1/agent/checks`).
fn agent_check(a: &TestAgent, id: &str) -> Value {
    a.get_ok("/v1/agent/checks").json()[id].clone()
}

fn status(a: &TestAgent, id: &str) -> String {
    agent_check(a, id)["Status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Waits until the service is passing (in DNS, in `?passing`) or critical
/// (in neither), asserting both views agree.
fn wait_healthy(a: &TestAgent, svc: &str, healthy: bool) {
    let ok = eventually(WAIT, || {
        in_dns(a, svc) == healthy && (passing_count(a, svc) == 1) == healthy
    });
    assert!(
        ok,
        "{svc} never became {}: health {}\nlog:\n{}",
        if healthy { "healthy" } else { "unhealthy" },
        a.get_ok(&format!("/v1/health/service/{svc}")).body,
        a.log_text()
    );
}

fn register(a: &TestAgent, body: Value) {
    let r = a.put("/v1/agent/service/register", &body.to_string());
    assert_eq!((r.status, r.body.as_str()), (200, ""), "{body}");
}

#[test]
fn http_check_follows_the_target() {
    let a = TestAgent::dev();
    let target = FlipHttp::start(200);
    register(
        &a,
        json!({"Name": "web", "Port": 80, "Check": {"HTTP": target.url(), "Interval": "1s"}}),
    );
    wait_healthy(&a, "web", true);
    let c = agent_check(&a, "service:web");
    assert_eq!(
        c["Output"],
        format!("HTTP GET {}: 200 OK Output: hello", target.url())
    );
    let head = target.last_request.lock().unwrap().to_ascii_lowercase();
    assert!(head.contains("user-agent: consul health check"), "{head}");
    assert!(head.contains("accept: text/plain, text/*, */*"), "{head}");

    target.set(500);
    wait_healthy(&a, "web", false);
    assert_eq!(status(&a, "service:web"), "critical");

    // 429 is a warning: still answered by DNS, not ?passing.
    target.set(429);
    assert!(eventually(WAIT, || status(&a, "service:web") == "warning"));
    assert!(in_dns(&a, "web"));
    assert_eq!(passing_count(&a, "web"), 0);
    assert_eq!(
        a.get_ok("/v1/health/checks/web").json()[0]["Status"],
        "warning"
    );

    target.set(200);
    wait_healthy(&a, "web", true);
}

#[test]
fn http_check_method_headers_and_body() {
    let a = TestAgent::dev();
    let target = FlipHttp::start(200);
    register(
        &a,
        json!({"Name": "api", "Check": {
            "HTTP": target.url(), "Interval": "1s", "Method": "POST",
            "Header": {"X-Probe": ["one", "two"], "User-Agent": ["mine"]},
            "Body": "{\"ping\":1}"
        }}),
    );
    wait_healthy(&a, "api", true);
    let head = target.last_request.lock().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("post /health http/1.1"), "{head}");
    assert!(head.contains("x-probe: one"), "{head}");
    assert!(head.contains("x-probe: two"), "{head}");
    assert!(head.contains("user-agent: mine"), "{head}");
    assert!(head.contains("content-length: 10"), "{head}");
}

#[test]
fn tcp_check_follows_the_listener() {
    let a = TestAgent::dev();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    register(
        &a,
        json!({"Name": "db", "Port": addr.port(), "Check": {"TCP": addr.to_string(), "Interval": "1s", "Timeout": "1s"}}),
    );
    wait_healthy(&a, "db", true);
    assert_eq!(
        agent_check(&a, "service:db")["Output"],
        format!("TCP connect {addr}: Success")
    );
    drop(listener);
    wait_healthy(&a, "db", false);
    let out = agent_check(&a, "service:db")["Output"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(out.starts_with(&format!("dial tcp {addr}:")), "{out}");
    let _again = std::net::TcpListener::bind(addr).expect("rebind");
    wait_healthy(&a, "db", true);
}

fn output(a: &TestAgent, id: &str) -> String {
    agent_check(a, id)["Output"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn udp_check_follows_the_listener() {
    let a = TestAgent::dev();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    register(
        &a,
        json!({"Name": "syslog", "Port": addr.port(), "Check": {"UDP": addr.to_string(), "Interval": "1s", "Timeout": "300ms"}}),
    );
    wait_healthy(&a, "syslog", true);
    assert_eq!(
        output(&a, "service:syslog"),
        format!("UDP connect {addr}: Success")
    );
    let mut probe = [0u8; 16];
    let (n, _from) = socket.recv_from(&mut probe).expect("the check's datagram");
    assert_eq!(n, 0, "Consul's UDP check sends an empty datagram");

    // Nothing bound: the ICMP port-unreachable reads as connection refused.
    drop(socket);
    wait_healthy(&a, "syslog", false);
    let out = output(&a, "service:syslog");
    assert!(out.starts_with("read udp 127.0.0.1:"), "{out}");
    assert!(
        out.ends_with(&format!("->{addr}: read: connection refused")),
        "{out}"
    );
    let _again = std::net::UdpSocket::bind(addr).expect("rebind");
    wait_healthy(&a, "syslog", true);
}

#[test]
fn h2ping_check_follows_the_server() {
    let a = TestAgent::dev();
    let mut server = H2Server::start();
    let addr = format!("127.0.0.1:{}", server.port);
    register(
        &a,
        json!({"Name": "h2", "Port": server.port, "Check": {"H2PING": addr, "H2PingUseTLS": false, "Interval": "1s", "Timeout": "1s"}}),
    );
    wait_healthy(&a, "h2", true);
    assert_eq!(output(&a, "service:h2"), "HTTP2 ping was successful");
    server.stop();
    wait_healthy(&a, "h2", false);
    let out = output(&a, "service:h2");
    assert!(
        out.starts_with(&format!("Failed to dial to {addr}: ")),
        "{out}"
    );

    // An HTTP/1 server does not speak HTTP/2: critical, not passing.
    let http1 = FlipHttp::start(200);
    register(
        &a,
        json!({"Name": "h1", "Port": http1.port, "Check": {"H2PING": format!("127.0.0.1:{}", http1.port), "H2PingUseTLS": false, "Interval": "1s", "Timeout": "1s"}}),
    );
    assert!(eventually(WAIT, || status(&a, "service:h1") == "critical"
        && !output(&a, "service:h1").is_empty()));
    assert!(!in_dns(&a, "h1"));
}

#[test]
fn h2ping_over_tls_verifies_unless_told_not_to() {
    let a = TestAgent::dev();
    let server = H2Server::start_tls();
    let addr = format!("127.0.0.1:{}", server.port);
    register(
        &a,
        json!({"Name": "strict", "Check": {"H2PING": addr, "Interval": "1s"}}),
    );
    register(
        &a,
        json!({"Name": "lax", "Check": {"H2PING": addr, "TLSSkipVerify": true, "Interval": "1s"}}),
    );
    wait_healthy(&a, "lax", true);
    assert_eq!(output(&a, "service:lax"), "HTTP2 ping was successful");
    assert!(eventually(WAIT, || status(&a, "service:strict")
        == "critical"
        && output(&a, "service:strict").contains("certificate")));
}

#[test]
fn ttl_check_expires_unless_refreshed() {
    let a = TestAgent::dev();
    register(
        &a,
        json!({"Name": "worker", "Check": {"TTL": "2s", "Status": "passing"}}),
    );
    wait_healthy(&a, "worker", true);
    // Refreshed well within the TTL, it stays passing.
    for _ in 0..8 {
        let r = a.put("/v1/agent/check/pass/service:worker?note=alive", "");
        assert_eq!(r.status, 200);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(status(&a, "service:worker"), "passing");
    }
    wait_healthy(&a, "worker", false);
    assert_eq!(
        agent_check(&a, "service:worker")["Output"],
        "TTL expired (last output before timeout follows): alive"
    );
    assert_eq!(
        a.get_ok("/v1/health/checks/worker").json()[0]["Output"],
        "TTL expired (last output before timeout follows): alive"
    );
    a.put("/v1/agent/check/pass/service:worker", "");
    assert!(in_dns(&a, "worker"), "a pass is visible when it returns");
    wait_healthy(&a, "worker", false);
}

#[test]
fn script_check_follows_exit_code() {
    let a = TestAgent::dev_with(&["-enable-script-checks"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let code = dir.path().join("code");
    std::fs::write(&code, "0").unwrap();
    let script = format!("echo checked; exit $(cat {})", code.display());
    register(
        &a,
        json!({"Name": "batch", "Check": {"Args": ["sh", "-c", script], "Interval": "1s"}}),
    );
    wait_healthy(&a, "batch", true);
    assert_eq!(agent_check(&a, "service:batch")["Output"], "checked\n");

    std::fs::write(&code, "1").unwrap();
    assert!(eventually(WAIT, || status(&a, "service:batch") == "warning"));
    assert!(in_dns(&a, "batch"), "warning instances stay in DNS");
    assert_eq!(passing_count(&a, "batch"), 0);

    std::fs::write(&code, "2").unwrap();
    wait_healthy(&a, "batch", false);
    assert_eq!(status(&a, "service:batch"), "critical");

    std::fs::write(&code, "0").unwrap();
    wait_healthy(&a, "batch", true);
}

#[test]
fn script_check_output_is_capped_and_timeouts_are_critical() {
    let a = TestAgent::dev_with(&["-enable-script-checks"]);
    a.put(
        "/v1/agent/check/register",
        &json!({"Name": "loud", "Args": ["sh", "-c", "head -c 5000 /dev/zero | tr '\\0' x"], "Interval": "1s"}).to_string(),
    );
    a.put(
        "/v1/agent/check/register",
        &json!({"Name": "slow", "Args": ["sleep", "30"], "Interval": "1s", "Timeout": "500ms"})
            .to_string(),
    );
    assert!(eventually(WAIT, || status(&a, "loud") == "passing"));
    let out = agent_check(&a, "loud")["Output"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        out.starts_with("Captured 4096 of 5000 bytes\n...\nxxx"),
        "{}",
        &out[..out.len().min(80)]
    );
    assert!(eventually(WAIT, || {
        agent_check(&a, "slow")["Output"] == "Timed out (500ms) running check"
    }));
    assert_eq!(status(&a, "slow"), "critical");
}

#[test]
fn script_checks_are_refused_unless_enabled() {
    let a = TestAgent::dev();
    let text = "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true";
    let r = a.put(
        "/v1/agent/service/register",
        r#"{"Name":"x","Check":{"Args":["true"],"Interval":"10s"}}"#,
    );
    assert_eq!((r.status, r.body.as_str()), (500, text));
    let r = a.put(
        "/v1/agent/check/register",
        r#"{"Name":"x","Args":["true"],"Interval":"10s"}"#,
    );
    assert_eq!((r.status, r.body.as_str()), (500, text));
    assert_eq!(a.get_ok("/v1/agent/services").json(), json!({}));
    drop(a);

    // enable_local_script_checks covers config-file checks only, as in Consul.
    let a = TestAgent::dev_with(&["-enable-local-script-checks"]);
    let r = a.put(
        "/v1/agent/check/register",
        r#"{"Name":"x","Args":["true"],"Interval":"10s"}"#,
    );
    assert_eq!((r.status, r.body.as_str()), (500, text));
}

#[test]
fn grpc_check_follows_serving_status() {
    let a = TestAgent::dev();
    let server = GrpcHealth::start(SERVING);
    let target = format!("127.0.0.1:{}/pkg.Greeter", server.port);
    register(
        &a,
        json!({"Name": "greeter", "Check": {"GRPC": target, "Interval": "1s"}}),
    );
    wait_healthy(&a, "greeter", true);
    assert_eq!(*server.last_service.lock().unwrap(), "pkg.Greeter");
    assert_eq!(
        agent_check(&a, "service:greeter")["Output"],
        format!("gRPC check {target}: success")
    );
    server.set(NOT_SERVING);
    wait_healthy(&a, "greeter", false);
    assert_eq!(
        agent_check(&a, "service:greeter")["Output"],
        format!("gRPC {target} serving status: NOT_SERVING")
    );
    server.set(SERVING);
    wait_healthy(&a, "greeter", true);
}

#[test]
fn alias_check_mirrors_another_service() {
    let a = TestAgent::dev();
    register(
        &a,
        json!({"Name": "backend", "Check": {"TTL": "60s", "Status": "passing"}}),
    );
    register(
        &a,
        json!({"Name": "frontend", "Check": {"AliasService": "backend"}}),
    );
    wait_healthy(&a, "frontend", true);
    assert_eq!(
        agent_check(&a, "service:frontend")["Output"],
        "All checks passing."
    );
    a.put("/v1/agent/check/fail/service:backend?note=db+down", "");
    wait_healthy(&a, "frontend", false);
    assert_eq!(
        agent_check(&a, "service:frontend")["Output"],
        "Aliased check \"Service 'backend' check\" failing: db down"
    );
    a.put("/v1/agent/check/pass/service:backend", "");
    wait_healthy(&a, "frontend", true);
    a.put("/v1/agent/service/deregister/backend", "");
    wait_healthy(&a, "frontend", false);
    assert_eq!(
        agent_check(&a, "service:frontend")["Output"],
        "Service backend could not be found on node node1"
    );
}

#[test]
fn thresholds_delay_transitions() {
    let a = TestAgent::dev();
    let target = FlipHttp::start(200);
    register(
        &a,
        json!({"Name": "flaky", "Check": {
            "HTTP": target.url(), "Interval": "1s",
            "SuccessBeforePassing": 2, "FailuresBeforeCritical": 3
        }}),
    );
    // The first result applies at once, as in Consul.
    wait_healthy(&a, "flaky", true);

    target.set(500);
    let failed_before = target.failures.load(std::sync::atomic::Ordering::SeqCst);
    let ok = eventually(WAIT, || {
        if status(&a, "service:flaky") != "critical" {
            return false;
        }
        let failures = target.failures.load(std::sync::atomic::Ordering::SeqCst) - failed_before;
        assert!(failures >= 3, "critical after only {failures} failures");
        true
    });
    assert!(ok, "never went critical");
    assert!(!in_dns(&a, "flaky"));

    target.set(200);
    let succeeded_before = target.successes.load(std::sync::atomic::Ordering::SeqCst);
    let ok = eventually(WAIT, || {
        if status(&a, "service:flaky") != "passing" {
            return false;
        }
        let successes =
            target.successes.load(std::sync::atomic::Ordering::SeqCst) - succeeded_before;
        assert!(successes >= 2, "passing after only {successes} successes");
        true
    });
    assert!(ok, "never recovered");
    wait_healthy(&a, "flaky", true);
}

#[test]
fn failures_before_warning_warns_first() {
    let a = TestAgent::dev();
    let target = FlipHttp::start(200);
    register(
        &a,
        json!({"Name": "wobbly", "Check": {
            "HTTP": target.url(), "Interval": "1s",
            "FailuresBeforeWarning": 1, "FailuresBeforeCritical": 3
        }}),
    );
    wait_healthy(&a, "wobbly", true);
    target.set(503);
    assert!(eventually(WAIT, || status(&a, "service:wobbly") == "warning"));
    assert!(eventually(WAIT, || status(&a, "service:wobbly") == "critical"));
    wait_healthy(&a, "wobbly", false);
}

#[test]
fn deregister_critical_service_after() {
    let a = TestAgent::dev();
    let target = FlipHttp::start(200);
    register(
        &a,
        json!({"Name": "ephemeral", "Check": {
            "HTTP": target.url(), "Interval": "1s", "DeregisterCriticalServiceAfter": "3s"
        }}),
    );
    // A service in maintenance is not reaped.
    register(
        &a,
        json!({"Name": "resting", "Check": {
            "HTTP": target.url(), "Interval": "1s", "DeregisterCriticalServiceAfter": "3s"
        }}),
    );
    wait_healthy(&a, "ephemeral", true);
    wait_healthy(&a, "resting", true);
    let r = a.put("/v1/agent/service/maintenance/resting?enable=true", "");
    assert_eq!(r.status, 200);
    // Passing for longer than the limit does not matter.
    std::thread::sleep(Duration::from_secs(4));
    assert!(a
        .get_ok("/v1/agent/services")
        .json()
        .get("ephemeral")
        .is_some());

    target.set(500);
    let gone = eventually(WAIT, || {
        a.get_ok("/v1/agent/services")
            .json()
            .get("ephemeral")
            .is_none()
    });
    assert!(gone, "service was not deregistered");
    // The agent forgets it first; the catalog write follows at once.
    assert!(
        eventually(WAIT, || a.get_ok("/v1/catalog/service/ephemeral").json()
            == json!([])),
        "service still in the catalog"
    );
    assert!(!in_dns(&a, "ephemeral"));
    assert!(a
        .get_ok("/v1/agent/checks")
        .json()
        .get("service:ephemeral")
        .is_none());
    assert!(a
        .get_ok("/v1/agent/services")
        .json()
        .get("resting")
        .is_some());
}

#[test]
fn maintenance_wins_over_a_passing_check() {
    let a = TestAgent::dev();
    let target = FlipHttp::start(200);
    register(
        &a,
        json!({"Name": "web", "Check": {"HTTP": target.url(), "Interval": "1s"}}),
    );
    wait_healthy(&a, "web", true);
    a.put(
        "/v1/agent/service/maintenance/web?enable=true&reason=deploy",
        "",
    );
    wait_healthy(&a, "web", false);
    // Several runs later the runner has not brought it back.
    let hits = target.hits.load(std::sync::atomic::Ordering::SeqCst);
    assert!(eventually(WAIT, || {
        target.hits.load(std::sync::atomic::Ordering::SeqCst) >= hits + 2
    }));
    assert!(!in_dns(&a, "web"));
    assert_eq!(status(&a, "service:web"), "passing");
    a.put("/v1/agent/service/maintenance/web?enable=false", "");
    wait_healthy(&a, "web", true);
}

#[test]
fn runners_follow_reregistration_and_deregistration() {
    let a = TestAgent::dev();
    let bad = FlipHttp::start(500);
    let good = FlipHttp::start(200);
    register(
        &a,
        json!({"Name": "svc", "Check": {"HTTP": bad.url(), "Interval": "1s"}}),
    );
    assert!(eventually(WAIT, || bad
        .hits
        .load(std::sync::atomic::Ordering::SeqCst)
        > 0));
    wait_healthy(&a, "svc", false);

    // A new definition replaces the runner.
    register(
        &a,
        json!({"Name": "svc", "Check": {"HTTP": good.url(), "Interval": "1s"}}),
    );
    wait_healthy(&a, "svc", true);
    let bad_hits = bad.hits.load(std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        bad.hits.load(std::sync::atomic::Ordering::SeqCst) <= bad_hits + 1,
        "the old runner kept running"
    );

    // Deregistration stops it.
    a.put("/v1/agent/service/deregister/svc", "");
    std::thread::sleep(Duration::from_millis(1500));
    let good_hits = good.hits.load(std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        good.hits.load(std::sync::atomic::Ordering::SeqCst),
        good_hits,
        "a deregistered check kept running"
    );
}

#[test]
fn runners_are_restored_after_a_restart() {
    let mut a = TestAgent::dev();
    let target = FlipHttp::start(200);
    register(
        &a,
        json!({"Name": "web", "Check": {"HTTP": target.url(), "Interval": "1s"}}),
    );
    register(
        &a,
        json!({"Name": "worker", "Check": {"TTL": "3s", "Status": "passing"}}),
    );
    wait_healthy(&a, "web", true);
    a.terminate();
    a.start();
    target.set(500);
    wait_healthy(&a, "web", false);
    // The TTL runner is back too: without updates the check expires.
    wait_healthy(&a, "worker", false);
    assert_eq!(agent_check(&a, "service:worker")["Output"], "TTL expired");
}

#[test]
fn node_check_failure_takes_every_service_out() {
    let a = TestAgent::dev();
    let target = FlipHttp::start(200);
    register(&a, json!({"Name": "one"}));
    register(&a, json!({"Name": "two"}));
    let r = a.put(
        "/v1/agent/check/register",
        &json!({"Name": "disk", "HTTP": target.url(), "Interval": "1s"}).to_string(),
    );
    assert_eq!(r.status, 200);
    wait_healthy(&a, "one", true);
    wait_healthy(&a, "two", true);
    target.set(500);
    wait_healthy(&a, "one", false);
    wait_healthy(&a, "two", false);
}

#[test]
fn status_changes_are_counted_in_metrics() {
    let a = TestAgent::dev();
    register(&a, json!({"Name": "web", "Check": {"TTL": "60s"}}));
    a.put("/v1/agent/check/pass/service:web", "");
    let text = a.get_ok("/v1/agent/metrics?format=prometheus").body;
    assert!(
        text.lines()
            .any(|l| l.starts_with("consul_agent_check_status_change")
                && l.contains("check_type=\"ttl\"")
                && l.contains("status=\"passing\"")),
        "{text}"
    );
}

#[test]
fn tcp_checks_with_tls_complete_the_handshake() {
    let a = TestAgent::dev();
    let server = TlsHttp::start();
    let addr = format!("127.0.0.1:{}", server.port);
    register(
        &a,
        json!({"Name": "tls-lax", "Check": {
            "TCP": addr, "TCPUseTLS": true, "TLSSkipVerify": true,
            "TLSServerName": "cairn-test.local", "Interval": "1s"
        }}),
    );
    register(
        &a,
        json!({"Name": "tls-strict", "Check": {"TCP": addr, "TCPUseTLS": true, "Interval": "1s"}}),
    );
    wait_healthy(&a, "tls-lax", true);
    assert_eq!(
        output(&a, "service:tls-lax"),
        format!("TCP+TLS connect {addr}: Success")
    );
    assert_eq!(*server.last_sni.lock().unwrap(), "cairn-test.local");
    // The connection opens, but the self-signed certificate is not trusted.
    assert!(eventually(WAIT, || output(&a, "service:tls-strict")
        .contains("certificate")));
    assert_eq!(status(&a, "service:tls-strict"), "critical");
}

#[test]
fn https_checks_verify_certificates_unless_told_not_to() {
    let a = TestAgent::dev();
    let server = TlsHttp::start();
    let url = format!("https://127.0.0.1:{}/health", server.port);
    register(
        &a,
        json!({"Name": "strict", "Check": {"HTTP": url, "Interval": "1s"}}),
    );
    register(
        &a,
        json!({"Name": "lenient", "Check": {
            "HTTP": url, "Interval": "1s", "TLSSkipVerify": true, "TLSServerName": "cairn-test.local"
        }}),
    );
    wait_healthy(&a, "lenient", true);
    assert_eq!(
        agent_check(&a, "service:lenient")["Output"],
        format!("HTTP GET {url}: 200 OK Output: secure")
    );
    assert_eq!(*server.last_sni.lock().unwrap(), "cairn-test.local");
    // A self-signed certificate is not trusted.
    assert!(eventually(WAIT, || !agent_check(&a, "service:strict")
        ["Output"]
        .as_str()
        .unwrap_or("")
        .is_empty()));
    assert_eq!(status(&a, "service:strict"), "critical");
    assert!(!in_dns(&a, "strict"));
}

#[test]
fn grpc_checks_over_tls() {
    let a = TestAgent::dev();
    let server = GrpcHealth::start_tls(SERVING);
    register(
        &a,
        json!({"Name": "secure-rpc", "Check": {
            "GRPC": format!("localhost:{}", server.port), "GRPCUseTLS": true,
            "TLSSkipVerify": true, "Interval": "1s"
        }}),
    );
    wait_healthy(&a, "secure-rpc", true);
    server.set(NOT_SERVING);
    wait_healthy(&a, "secure-rpc", false);
}

/// A `FROM scratch` image holding Debian's static busybox, and the one
/// container this test runs from it; both are removed on drop.
struct BusyboxContainer {
    image: String,
    name: String,
}

impl BusyboxContainer {
    fn start(dir: &std::path::Path) -> BusyboxContainer {
        use common::docker::docker_ok;
        let tag = format!("c{}", std::process::id());
        let ctx = dir.join("image");
        std::fs::create_dir_all(ctx.join("bin")).expect("image dir");
        std::fs::copy("/bin/busybox", ctx.join("bin/busybox"))
            .expect("/bin/busybox (Debian's busybox-static) must be installed");
        std::fs::write(
            ctx.join("Dockerfile"),
            "FROM scratch\nCOPY bin/busybox /bin/busybox\n\
             ENTRYPOINT [\"/bin/busybox\", \"sleep\", \"3600\"]\n",
        )
        .expect("Dockerfile");
        let c = BusyboxContainer {
            image: format!("cairn-docker-check-test/{tag}:1"),
            name: format!("cairn-docker-check-{tag}"),
        };
        docker_ok(&["build", "-q", "-t", &c.image, &ctx.to_string_lossy()]);
        docker_ok(&["run", "-d", "--name", &c.name, &c.image]);
        c
    }

    fn set_code(&self, code: u8) {
        common::docker::docker_ok(&[
            "exec",
            &self.name,
            "/bin/busybox",
            "sh",
            "-c",
            &format!("echo {code} > /code"),
        ]);
    }
}

impl Drop for BusyboxContainer {
    fn drop(&mut self) {
        let _ = common::docker::docker(&["rm", "-f", &self.name]);
        let _ = common::docker::docker(&["rmi", "-f", &self.image]);
    }
}

#[test]
fn docker_check_runs_in_the_container() {
    let dir = tempfile::tempdir().expect("tempdir");
    let container = BusyboxContainer::start(dir.path());
    container.set_code(0);
    let a = TestAgent::dev_with(&["-enable-script-checks"]);
    let script = "echo in-container; exit $(/bin/busybox cat /code)";
    register(
        &a,
        json!({"Name": "boxed", "Check": {
            "DockerContainerID": container.name, "Shell": "/bin/busybox",
            "Args": ["/bin/busybox", "sh", "-c", script], "Interval": "1s"
        }}),
    );
    wait_healthy(&a, "boxed", true);
    assert_eq!(output(&a, "service:boxed"), "in-container\n");

    container.set_code(1);
    assert!(eventually(WAIT, || status(&a, "service:boxed") == "warning"));
    container.set_code(2);
    wait_healthy(&a, "boxed", false);
    container.set_code(0);
    wait_healthy(&a, "boxed", true);

    // A container that does not exist: critical with the daemon's answer.
    register(
        &a,
        json!({"Name": "ghost", "Check": {
            "DockerContainerID": "cairn-no-such-container", "Args": ["/bin/true"], "Interval": "1s"
        }}),
    );
    assert!(eventually(WAIT, || status(&a, "service:ghost")
        == "critical"
        && output(&a, "service:ghost").contains("No such container")));
}

#[test]
fn docker_checks_are_refused_unless_scripts_are_enabled() {
    let a = TestAgent::dev();
    let r = a.put(
        "/v1/agent/check/register",
        &json!({"Name": "boxed", "DockerContainerID": "x", "Args": ["/bin/true"], "Interval": "1s"})
            .to_string(),
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (
            500,
            "Scripts are disabled on this agent from remote calls; to enable, configure 'enable_script_checks' to true"
        )
    );
}

#[test]
fn os_service_checks_ask_systemd() {
    // No systemd runs here; a `systemctl` on the agent's PATH answers
    // `is-active` from a state file the test flips, as systemd would.
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    std::fs::write(&state, "active").unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let systemctl = bin.join("systemctl");
    std::fs::write(
        &systemctl,
        format!(
            "#!/bin/sh\n[ \"$1\" = is-active ] && [ \"$2\" = -- ] && [ \"$3\" = nginx ] || exit 4\n\
             s=$(cat {}); echo \"$s\"; [ \"$s\" = active ]\n",
            state.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut a = TestAgent::unstarted("127.0.0.1", &[]);
    let path = std::env::var("PATH").unwrap_or_default();
    a.env
        .push(("PATH".into(), format!("{}:{path}", bin.display())));
    a.start();
    register(
        &a,
        json!({"Name": "web", "Check": {"OSService": "nginx", "Interval": "1s"}}),
    );
    wait_healthy(&a, "web", true);
    assert_eq!(output(&a, "service:web"), "Service \"nginx\" is healthy");
    std::fs::write(&state, "inactive").unwrap();
    wait_healthy(&a, "web", false);
    assert_eq!(
        output(&a, "service:web"),
        "service status: inactive - OS Service unhealthy"
    );
    std::fs::write(&state, "active").unwrap();
    wait_healthy(&a, "web", true);
}
