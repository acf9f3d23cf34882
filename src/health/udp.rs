//! UDP checks, as Consul runs them: one empty datagram to `UDP`
//! (`host:port`), then a wait of up to the timeout for anything back. A
//! reply, or silence until the timeout, is passing (`UDP connect <addr>:
//! Success`: UDP cannot tell a silent listener from a lost datagram); an
//! error is critical, typically the ICMP port-unreachable that a host with
//! nothing bound to the port sends back, which reads as `connection refused`.

use super::Probe;
use crate::catalog::types::HealthStatus;
use std::time::Duration;
use tokio::net::UdpSocket;

pub struct UdpProbe {
    pub addr: String,
    pub timeout: Duration,
}

impl Probe for UdpProbe {
    async fn probe(&self) -> (HealthStatus, String) {
        match self.exchange().await {
            Ok(()) => (
                HealthStatus::Passing,
                format!("UDP connect {}: Success", self.addr),
            ),
            Err(why) => (HealthStatus::Critical, why),
        }
    }
}

impl UdpProbe {
    async fn exchange(&self) -> Result<(), String> {
        let target = tokio::net::lookup_host(&self.addr)
            .await
            .map_err(|e| format!("dial udp {}: {e}", self.addr))?
            .next()
            .ok_or_else(|| format!("dial udp {}: no addresses", self.addr))?;
        let local = if target.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let sock = UdpSocket::bind(local)
            .await
            .map_err(|e| format!("dial udp {}: {e}", self.addr))?;
        sock.connect(target)
            .await
            .map_err(|e| format!("dial udp {}: {e}", self.addr))?;
        let pair = || {
            let from = sock.local_addr().map(|a| a.to_string()).unwrap_or_default();
            format!("{from}->{target}")
        };
        sock.send(&[])
            .await
            .map_err(|e| format!("write udp {}: write: {}", pair(), os_text(&e)))?;
        let mut buf = [0u8; 1];
        match tokio::time::timeout(self.timeout, sock.recv(&mut buf)).await {
            Err(_silence) => Ok(()),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("read udp {}: read: {}", pair(), os_text(&e))),
        }
    }
}

/// An I/O error as Go prints a syscall error: `connection refused`, not
/// Rust's `Connection refused (os error 111)`.
fn os_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let bare = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = bare.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(addr: String) -> UdpProbe {
        UdpProbe {
            addr,
            timeout: Duration::from_millis(300),
        }
    }

    #[tokio::test]
    async fn a_silent_listener_passes() {
        let listener = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (status, output) = probe(addr.clone()).probe().await;
        assert_eq!(status, HealthStatus::Passing, "{output}");
        assert_eq!(output, format!("UDP connect {addr}: Success"));
    }

    #[tokio::test]
    async fn a_closed_port_is_critical_with_connection_refused() {
        let addr = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().to_string()
        };
        let (status, output) = probe(addr.clone()).probe().await;
        assert_eq!(status, HealthStatus::Critical, "{output}");
        assert!(output.starts_with("read udp 127.0.0.1:"), "{output}");
        assert!(
            output.ends_with(&format!("->{addr}: read: connection refused")),
            "{output}"
        );
    }

    #[tokio::test]
    async fn an_unresolvable_name_is_critical() {
        let (status, output) = probe("no-such-host.invalid:53".into()).probe().await;
        assert_eq!(status, HealthStatus::Critical);
        assert!(
            output.starts_with("dial udp no-such-host.invalid:53: "),
            "{output}"
        );
    }
}
