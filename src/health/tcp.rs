//! TCP checks: passing when a connection to `TCP` (`host:port`) opens
//! within the timeout, critical otherwise. The connection is closed at once.

use super::Probe;
use crate::catalog::types::HealthStatus;
use std::time::Duration;

pub struct TcpProbe {
    pub addr: String,
    pub timeout: Duration,
}

impl Probe for TcpProbe {
    async fn probe(&self) -> (HealthStatus, String) {
        let attempt =
            tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(&self.addr));
        match attempt.await {
            Ok(Ok(_stream)) => (
                HealthStatus::Passing,
                format!("TCP connect {}: Success", self.addr),
            ),
            Ok(Err(e)) => (
                HealthStatus::Critical,
                format!("dial tcp {}: {e}", self.addr),
            ),
            Err(_) => (
                HealthStatus::Critical,
                format!("dial tcp {}: i/o timeout", self.addr),
            ),
        }
    }
}
