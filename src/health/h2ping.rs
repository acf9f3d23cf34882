//! H2PING checks, as Consul runs them: open an HTTP/2 connection to
//! `H2PING` (`host:port`; over TLS with `H2PingUseTLS`, offering ALPN `h2`,
//! otherwise cleartext with prior knowledge) and send one PING frame.
//! Passing when the PING is acknowledged within the timeout.

use super::Probe;
use crate::catalog::types::HealthStatus;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;

pub struct H2PingProbe {
    addr: String,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    timeout: Duration,
}

impl H2PingProbe {
    pub async fn new(
        addr: &str,
        use_tls: bool,
        skip_verify: bool,
        server_name: &str,
        timeout: Duration,
    ) -> Result<H2PingProbe, String> {
        let tls = if use_tls {
            let config = super::tls::client_config(skip_verify, &[b"h2"]).await?;
            let name = if server_name.is_empty() {
                host_of(addr)
            } else {
                server_name
            };
            let name = ServerName::try_from(name.to_string())
                .map_err(|e| format!("invalid TLS server name {name:?}: {e}"))?;
            Some((Arc::new(config), name))
        } else {
            None
        };
        Ok(H2PingProbe {
            addr: addr.to_string(),
            tls,
            timeout,
        })
    }

    async fn ping(&self) -> Result<(), String> {
        let tcp = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| {
                format!(
                    "Failed to dial to {}: dial tcp {}: {e}",
                    self.addr, self.addr
                )
            })?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => ping_over(tcp).await,
            Some((config, name)) => {
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("Failed to dial to {}: {e}", self.addr))?;
                ping_over(tls).await
            }
        }
    }
}

fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(addr)
        .trim_start_matches('[')
        .trim_end_matches(']')
}

async fn ping_over<T>(io: T) -> Result<(), String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, mut connection) = h2::client::handshake(io)
        .await
        .map_err(|e| format!("Failed to create client connection {e}"))?;
    let mut ping_pong = connection
        .ping_pong()
        .ok_or("Failed to create client connection: no PING handle")?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = ping_pong
        .ping(h2::Ping::opaque())
        .await
        .map(|_pong| ())
        .map_err(|e| format!("HTTP2 ping failed: {e}"));
    drop(client);
    driver.abort();
    result
}

impl Probe for H2PingProbe {
    async fn probe(&self) -> (HealthStatus, String) {
        match tokio::time::timeout(self.timeout, self.ping()).await {
            Ok(Ok(())) => (HealthStatus::Passing, "HTTP2 ping was successful".into()),
            Ok(Err(why)) => (HealthStatus::Critical, why),
            Err(_) => (
                HealthStatus::Critical,
                "HTTP2 ping failed: context deadline exceeded".into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn probe(addr: &str) -> H2PingProbe {
        H2PingProbe::new(addr, false, false, "", Duration::from_secs(2))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn an_http2_server_acknowledges_the_ping() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let mut conn = h2::server::handshake(sock).await.unwrap();
            while let Some(Ok(_req)) = conn.accept().await {}
        });
        let (status, output) = probe(&addr).await.probe().await;
        assert_eq!(status, HealthStatus::Passing, "{output}");
        assert_eq!(output, "HTTP2 ping was successful");
    }

    #[tokio::test]
    async fn an_http1_server_fails_the_check() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = sock.read(&mut buf).await;
            let _ = sock
                .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
                .await;
        });
        let (status, output) = probe(&addr).await.probe().await;
        assert_eq!(status, HealthStatus::Critical);
        assert!(
            output.starts_with("HTTP2 ping failed: ")
                || output.starts_with("Failed to create client connection"),
            "{output}"
        );
    }

    #[tokio::test]
    async fn a_closed_port_fails_to_dial() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let (status, output) = probe(&addr).await.probe().await;
        assert_eq!(status, HealthStatus::Critical);
        assert!(
            output.starts_with(&format!("Failed to dial to {addr}: dial tcp {addr}: ")),
            "{output}"
        );
    }
}
