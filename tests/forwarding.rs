//! A stub forwarder in front of cairn, as people deploy it: dnsmasq sends
//! `.consul` queries to cairn's DNS port and answers the client.

mod common;

use common::{dig, eventually, free_port, TestAgent};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Dnsmasq(std::process::Child);

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn dnsmasq_forwards_consul_queries_to_cairn() {
    let agent = TestAgent::dev();
    let r = agent.put(
        "/v1/agent/service/register",
        r#"{"Name":"web","ID":"web1","Port":8080,"Address":"10.9.8.7"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.body);

    let port = free_port();
    let child = Command::new("dnsmasq")
        .args([
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--no-poll",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--user=root",
            "--pid-file",
            &format!("--port={port}"),
            &format!("--server=/consul/127.0.0.1#{}", agent.ports.dns),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dnsmasq must be installed (scripts/test installs it)");
    let _guard = Dnsmasq(child);

    assert!(
        eventually(Duration::from_secs(10), || dig(
            port,
            &["+short", "web.service.consul", "A"]
        )
        .contains("10.9.8.7")),
        "A through dnsmasq"
    );
    let srv = dig(port, &["+short", "web.service.consul", "SRV"]);
    assert!(srv.contains("8080"), "SRV through dnsmasq: {srv}");
    let nx = dig(port, &["nosuch.service.consul", "A"]);
    assert!(
        nx.contains("NXDOMAIN"),
        "negative answers pass through: {nx}"
    );
}
