//! Dialling the RPC port: from the agent's bind address (so peers and
//! firewalls see the address the agent advertises), with the connection's
//! protocol byte sent first.
//!
//! With `verify_outgoing` every dial is TLS, in Consul's scheme: the
//! `RPCTLS` byte (0x03) in plain text, the handshake (presenting the
//! agent's certificate), then the real protocol byte inside the session.
//! With `verify_server_hostname` the server's certificate must be valid
//! for `server.<dc>.<domain>`; without it, only its chain is checked.

use super::{Protocol, RpcStream, RPC_TLS};
use crate::tls::handshake_log::FailureLog;
use rustls::pki_types::ServerName;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

async fn resolve(addr: &str) -> io::Result<SocketAddr> {
    if let Ok(a) = addr.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(addr)
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {addr}")))
}

/// The client side of the RPC port's TLS.
#[derive(Clone)]
pub struct DialTls {
    connector: tokio_rustls::TlsConnector,
    /// `server.<dc>.<domain>` with `verify_server_hostname`; else the
    /// server is named by its IP (and its certificate's names not checked).
    server_name: Option<ServerName<'static>>,
    failures: Arc<FailureLog>,
}

impl DialTls {
    pub fn new(
        config: Arc<rustls::ClientConfig>,
        server_name: Option<ServerName<'static>>,
    ) -> Self {
        DialTls {
            connector: config.into(),
            server_name,
            failures: Arc::new(FailureLog::outgoing("rpc")),
        }
    }
}

/// How this agent connects to servers: from where, and whether in TLS.
#[derive(Clone, Default)]
pub struct Dialer {
    local: Option<IpAddr>,
    tls: Option<DialTls>,
}

impl Dialer {
    /// Plain-text dials from `local` (when it is a specific address of the
    /// target's family).
    pub fn plain(local: Option<IpAddr>) -> Dialer {
        Dialer { local, tls: None }
    }

    /// TLS dials from `local`.
    pub fn with_tls(local: Option<IpAddr>, tls: Option<DialTls>) -> Dialer {
        Dialer { local, tls }
    }

    /// The same dialer for servers of datacenter `dc`: with
    /// `verify_server_hostname` their certificates must be valid for
    /// `server.<dc>.<domain>` rather than this datacenter's name.
    pub fn for_datacenter(&self, dc: &str, domain: &str) -> Dialer {
        let mut d = self.clone();
        if let Some(tls) = d.tls.as_mut().filter(|t| t.server_name.is_some()) {
            match crate::tls::outgoing::server_name(dc, domain) {
                Ok(name) => tls.server_name = Some(name),
                Err(e) => tracing::warn!(datacenter = dc, "no TLS server name for datacenter: {e}"),
            }
        }
        d
    }

    /// The address connections are made from.
    pub fn local(&self) -> Option<IpAddr> {
        self.local
    }

    /// Connects to `addr` and names the connection's protocol.
    pub async fn dial(&self, addr: &str, protocol: Protocol) -> io::Result<RpcStream> {
        let target = resolve(addr).await?;
        let sock = if target.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        if let Some(ip) = self
            .local
            .filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == target.is_ipv4())
        {
            sock.bind(SocketAddr::new(ip, 0))?;
        }
        let mut stream = sock.connect(target).await?;
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            stream.write_all(&[protocol as u8]).await?;
            return Ok(RpcStream::Plain(stream));
        };
        stream.write_all(&[RPC_TLS]).await?;
        let name = tls
            .server_name
            .clone()
            .unwrap_or(ServerName::IpAddress(target.ip().into()));
        let mut session = match tls.connector.connect(name, stream).await {
            Ok(s) => s,
            Err(e) => {
                tls.failures.report(target, &e);
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("TLS handshake with {target}: {e}"),
                ));
            }
        };
        session.write_all(&[protocol as u8]).await?;
        Ok(RpcStream::Tls(Box::new(session.into())))
    }
}
