//! TCP checks: passing when a connection to `TCP` (`host:port`) opens
//! within the timeout, critical otherwise. With `TCPUseTLS` the TLS
//! handshake must complete too (system trust roots, `TLSServerName`,
//! `TLSSkipVerify`), and the output says `TCP+TLS`. The connection is
//! closed at once.

use super::Probe;
use crate::catalog::types::HealthStatus;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;

pub struct TcpProbe {
    addr: String,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    timeout: Duration,
}

impl TcpProbe {
    pub async fn new(
        addr: &str,
        use_tls: bool,
        skip_verify: bool,
        server_name: &str,
        timeout: Duration,
    ) -> Result<TcpProbe, String> {
        let tls = if use_tls {
            let config = super::tls::client_config(skip_verify, &[]).await?;
            let name = if server_name.is_empty() {
                addr.rsplit_once(':')
                    .map(|(h, _)| h)
                    .unwrap_or(addr)
                    .trim_start_matches('[')
                    .trim_end_matches(']')
            } else {
                server_name
            };
            let name = ServerName::try_from(name.to_string())
                .map_err(|e| format!("invalid TLS server name {name:?}: {e}"))?;
            Some((Arc::new(config), name))
        } else {
            None
        };
        Ok(TcpProbe {
            addr: addr.to_string(),
            tls,
            timeout,
        })
    }

    async fn connect(&self) -> Result<(), String> {
        let tcp = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("dial tcp {}: {e}", self.addr))?;
        if let Some((config, name)) = &self.tls {
            tokio_rustls::TlsConnector::from(config.clone())
                .connect(name.clone(), tcp)
                .await
                .map_err(|e| format!("tls handshake with {}: {e}", self.addr))?;
        }
        Ok(())
    }
}

impl Probe for TcpProbe {
    async fn probe(&self) -> (HealthStatus, String) {
        let kind = if self.tls.is_some() { "TCP+TLS" } else { "TCP" };
        match tokio::time::timeout(self.timeout, self.connect()).await {
            Ok(Ok(())) => (
                HealthStatus::Passing,
                format!("{kind} connect {}: Success", self.addr),
            ),
            Ok(Err(why)) => (HealthStatus::Critical, why),
            Err(_) => (
                HealthStatus::Critical,
                format!("dial tcp {}: i/o timeout", self.addr),
            ),
        }
    }
}
